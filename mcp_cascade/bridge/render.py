"""Claude's Markdown as Telegram shows it: plain text plus entities, in parts of at most 4,096 UTF-16 units.

telegramify-markdown converts Markdown to ``(text, [MessageEntity])`` (no
MarkdownV2 escaping to get wrong, so nothing shows as raw asterisks or
backslashes). The split is ours: it cuts at paragraph breaks outside code
blocks first, then at other line breaks outside code, then between the lines
of a code block, then at a space, and only then anywhere; an entity that spans
a cut is clipped into both parts, so every part's entities stay valid and the
parts' texts concatenate to the whole text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import telegramify_markdown

MAX_UNITS = 4096
_CODE = frozenset({"pre", "code"})
_UNSAFE_TYPES = frozenset({"custom_emoji", "text_mention", "date_time"})


@dataclass(frozen=True, slots=True)
class Entity:
    """A Telegram MessageEntity (offset and length in UTF-16 units)."""

    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None

    def to_api(self) -> dict[str, object]:
        """The Bot API JSON object."""
        body: dict[str, object] = {"type": self.type, "offset": self.offset, "length": self.length}
        if self.url is not None:
            body["url"] = self.url
        if self.language is not None:
            body["language"] = self.language
        return body


@dataclass(frozen=True, slots=True)
class Rendered:
    """Text and its entities, ready for sendMessage."""

    text: str
    entities: tuple[Entity, ...] = ()


def units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units; a lone surrogate counts one)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def render(markdown: str, header: str = "") -> Rendered:
    """``markdown`` converted, after a plain ``header`` (e.g. the session's name outside a topic)."""
    text, entities = telegramify_markdown.convert(markdown, latex_escape=False)
    shift = units(header)
    kept = tuple(
        Entity(e.type, e.offset + shift, e.length, e.url, e.language)
        for e in entities
        if e.type not in _UNSAFE_TYPES and e.length > 0
    )
    return Rendered(header + text, kept)


def plain(text: str) -> Rendered:
    """Text shown as it is."""
    return Rendered(text)


def split(message: Rendered, limit: int = MAX_UNITS) -> list[Rendered]:
    """Parts of at most ``limit`` UTF-16 units whose texts concatenate to ``message.text``."""
    text = message.text
    table = _offsets(text)
    if table[-1] <= limit:
        return [message]
    code = [(e.offset, e.offset + e.length) for e in message.entities if e.type in _CODE]
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = _cut(text, table, code, start, limit)
        bounds.append((start, end))
        start = end
    parts: list[Rendered] = []
    for start, end in bounds:
        lo, hi = table[start], table[end]
        part = Rendered(text[start:end], tuple(_clip(message.entities, lo, hi)))
        if parts and not part.text.strip() and units(parts[-1].text) + hi - lo <= limit:
            last = parts.pop()  # a whitespace-only part cannot be sent on its own
            part = Rendered(last.text + part.text, last.entities)
        parts.append(part)
    return parts


def _offsets(text: str) -> list[int]:
    """``table[i]`` is the UTF-16 offset of ``text[i]``; ``table[len(text)]`` the total."""
    table = [0] * (len(text) + 1)
    total = 0
    for i, char in enumerate(text):
        table[i] = total
        total += 2 if ord(char) > 0xFFFF else 1
    table[len(text)] = total
    return table


def _cut(text: str, table: list[int], code: Sequence[tuple[int, int]], start: int, limit: int) -> int:
    """Where the part starting at ``start`` ends: the best-ranked boundary that fits, not too early."""
    budget = table[start] + limit
    if table[-1] <= budget:
        return len(text)
    hard = start + 1
    while hard < len(text) and table[hard + 1] <= budget:
        hard += 1
    floor = start + (hard - start) // 2  # a cut before half the room is not worth its rank

    def in_code(at: int) -> bool:
        unit = table[at]
        return any(lo < unit < hi for lo, hi in code)

    best: tuple[int, int] | None = None  # (rank, position)
    for at in range(hard, floor, -1):
        before = text[at - 1]
        if before == "\n":
            rank = (0 if at >= 2 and text[at - 2] == "\n" else 1) if not in_code(at) else 2
        elif before == " ":
            rank = 3
        else:
            continue
        if best is None or rank < best[0]:
            best = (rank, at)
            if rank == 0:
                break
    return best[1] if best is not None else hard


def _clip(entities: Sequence[Entity], lo: int, hi: int) -> list[Entity]:
    clipped: list[Entity] = []
    for e in entities:
        start, end = max(e.offset, lo), min(e.offset + e.length, hi)
        if end > start:
            clipped.append(Entity(e.type, start - lo, end - start, e.url, e.language))
    return clipped
