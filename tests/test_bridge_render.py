"""Claude's Markdown as Telegram entities, split into valid parts; the fake checks entities like Telegram."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_cascade.bridge.render import Rendered, render, split, units
from mcp_cascade.testing.fake_rules import check_entities
from mcp_cascade.testing.fake_types import ApiError


def long_markdown(size: int = 12_000) -> str:
    """Headings, styles, links, emoji outside the BMP and long code blocks, past ``size`` characters."""
    out, i = "", 0
    while len(out) < size:
        code = "\n".join(f"    total += values[{j}]  # 😀 step {j}" for j in range(60))
        out += (
            f"## Part {i}\n\nSome **bold**, _italic_ and `inline code` with 😀 and a [link](https://e.x/{i}).\n\n"
            f"```python\ndef f{i}(values):\n    total = 0\n{code}\n    return total\n```\n\n"
        )
        i += 1
    return out


def _valid(part: Rendered) -> None:
    assert units(part.text) <= 4096
    assert part.text.strip()
    check_entities(part.text, [e.to_api() for e in part.entities])


def test_markdown_becomes_text_and_entities_without_markup_characters() -> None:
    shown = render("Some **bold** and `code`\n\n```sh\nls -l\n```", header="💬 demo\n")
    assert "**" not in shown.text and "`" not in shown.text
    assert shown.text.startswith("💬 demo\n")
    kinds = {
        (e.type, shown.text.encode("utf-16-le")[2 * e.offset : 2 * (e.offset + e.length)])
        for e in shown.entities
    }
    assert ("bold", "bold".encode("utf-16-le")) in kinds
    assert ("pre", "ls -l".encode("utf-16-le")) in kinds


def test_a_12000_character_reply_splits_into_valid_parts_that_concatenate_to_the_whole() -> None:
    shown = render(long_markdown())
    parts = split(shown)
    assert len(parts) >= 3
    assert "".join(p.text for p in parts) == shown.text
    for part in parts:
        _valid(part)
    assert all(p.text.endswith("\n") for p in parts[:-1])  # cut at line ends, never mid-line
    # every character keeps its formatting: the parts' entities, shifted back, cover what the whole had
    covered = sum(e.length for p in parts for e in p.entities)
    assert covered == sum(e.length for e in shown.entities)


def test_paragraph_breaks_outside_code_are_preferred_to_lines_inside_code() -> None:
    shown = render(f"intro\n\n{'x' * 2000}\n\n```\n" + "\n".join("y" * 50 for _ in range(60)) + "\n```")
    parts = split(shown, limit=2500)
    assert parts[0].text.endswith("\n\n")  # the paragraph break, not a line inside the code block
    assert parts[1].entities[0].type == "pre"


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=3000), st.integers(20, 600))
def test_any_text_splits_into_parts_that_fit_and_rejoin(text: str, limit: int) -> None:
    shown = render(text)
    parts = split(shown, limit)
    assert "".join(p.text for p in parts).strip() == shown.text.strip()
    for part in parts:
        assert units(part.text) <= limit
        check_entities(part.text, [e.to_api() for e in part.entities])


@pytest.mark.parametrize(
    ("text", "entities", "why"),
    [
        ("hello", [{"type": "bold", "offset": 3, "length": 5}], "outside the text"),
        ("😀x", [{"type": "bold", "offset": 1, "length": 1}], "splits a character"),
        (
            "abcdef",
            [{"type": "bold", "offset": 0, "length": 4}, {"type": "url", "offset": 2, "length": 4}],
            "overlap",
        ),
        (
            "abcdef",
            [{"type": "pre", "offset": 0, "length": 6}, {"type": "bold", "offset": 1, "length": 2}],
            "contain",
        ),
        ("abc", [{"type": "text_link", "offset": 0, "length": 3}], "without url"),
        ("abc", [{"type": "shiny", "offset": 0, "length": 3}], "bad entity"),
    ],
)
def test_the_fake_refuses_entities_telegram_refuses(
    text: str, entities: list[dict[str, object]], why: str
) -> None:
    with pytest.raises(ApiError, match=why):
        check_entities(text, entities)


def test_the_fake_accepts_nested_styles() -> None:
    ok = [{"type": "bold", "offset": 0, "length": 6}, {"type": "italic", "offset": 1, "length": 2}]
    assert check_entities("abcdef", ok) == ok
