"""The README cannot drift: its commands, snippets and tables are checked against the code."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from mcp_cascade.cli import build_parser, config_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def _blocks(lang: str) -> list[str]:
    return [text for kind, text in BLOCKS if kind == lang]


def test_the_readme_opens_with_the_install_and_run_command_then_the_test_command() -> None:
    first, second = _blocks("sh")[:2]
    assert first.strip() == "pip install . && mcp-cascade demo"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert second.strip() in ci.splitlines(), "CI must run the README's test command verbatim"
    assert README.index(first) < README.index("## What it is")


def test_the_configuration_table_is_the_generated_one() -> None:
    assert config_table() in README


def test_the_mcp_json_snippet_is_the_shipped_claude_config() -> None:
    (snippet,) = _blocks("json")
    assert json.loads(snippet) == json.loads((ROOT / "claude_config.json").read_text())
    assert json.loads((ROOT / ".mcp.json").read_text()) == json.loads(snippet)


def _commands() -> list[str]:
    lines = []
    for text in _blocks("sh"):
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("mcp-cascade "):
                lines.append(line)
    return lines


@pytest.mark.parametrize("line", _commands())
def test_every_mcp_cascade_command_in_the_readme_parses(line: str) -> None:
    for part in line.split(" && "):
        args = shlex.split(part)
        assert args[0] == "mcp-cascade"
        build_parser().parse_args(args[1:])


def test_the_signing_snippet_is_the_tested_example_script() -> None:
    script = (ROOT / "examples" / "post_response.sh").read_text(encoding="utf-8")
    snippet = next(t for t in _blocks("sh") if "openssl dgst" in t)
    for line in snippet.splitlines():
        stripped = line.strip().rstrip("\\").strip()
        if stripped:
            assert stripped in script, stripped


def test_every_linked_file_exists() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
