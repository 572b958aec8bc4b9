"""What the fake Bot API checks the way Telegram does: entities, reactions, flood limits.

Entities (Bot API "MessageEntity"): offsets and lengths in UTF-16 units, inside
the text, not splitting a surrogate pair; two entities sharing characters must
nest, ``pre``/``code`` contain nothing, blockquotes do not nest, and only the
style entities (bold, italic, underline, strikethrough, spoiler) may contain or
be inside others.

Flood limits (when the fake is given :class:`FloodRules`): at most ``count``
messages in any ``seconds`` window, per private chat, per group, and over the
whole bot; a request over a limit, or one that comes back before the
``retry_after`` of its chat's last 429, is answered 429 again (retrying early
extends the wait, as on Telegram). Without rules, an early return is only
counted in :attr:`Flood.violations`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mcp_cascade.testing.fake_types import MAX_CALLBACK_DATA, MAX_TEXT, ApiError, utf16_len

_STYLES = frozenset({"bold", "italic", "underline", "strikethrough", "spoiler"})
_QUOTES = frozenset({"blockquote", "expandable_blockquote"})
_KNOWN = (
    _STYLES
    | _QUOTES
    | {"mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number", "code", "pre"}
    | {"text_link", "text_mention", "custom_emoji", "date_time"}
)
# Methods that put something into a chat and count against its limit.
LIMITED = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "editMessageText",
        "editMessageReplyMarkup",
        "setMessageReaction",
        "createForumTopic",
        "editForumTopic",
        "closeForumTopic",
        "reopenForumTopic",
    }
)


def check_markup(markup: Any) -> dict[str, Any] | None:
    """An inline keyboard, checked like Telegram does."""
    if markup is None:
        return None
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup["inline_keyboard"]:
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


def check_text(params: dict[str, Any]) -> str:
    """A message text, checked like Telegram does."""
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if utf16_len(text) > MAX_TEXT:
        raise ApiError(400, "Bad Request: message is too long")
    return text


def chat_param(params: dict[str, Any]) -> int | None:
    """The request's chat_id, when it is one."""
    chat = params.get("chat_id")
    return chat if isinstance(chat, int) and not isinstance(chat, bool) else None


def check_entities(text: str, raw: Any) -> list[dict[str, Any]]:
    """The entities of a message, or a 400 like Telegram's "can't parse entities"."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "Bad Request: can't parse entities: entities must be an array")
    size = utf16_len(text)
    starts = _unit_starts(text)
    spans: list[tuple[int, int, str]] = []
    for entity in raw:
        if not isinstance(entity, dict):
            raise ApiError(400, "Bad Request: can't parse entities: an entity must be an object")
        kind, offset, length = entity.get("type"), entity.get("offset"), entity.get("length")
        if kind not in _KNOWN or not isinstance(offset, int) or not isinstance(length, int):
            raise ApiError(400, f"Bad Request: can't parse entities: bad entity {entity}")
        end = offset + length
        if offset < 0 or length <= 0 or end > size:
            raise ApiError(400, f"Bad Request: can't parse entities: entity {entity} is outside the text")
        if offset not in starts or end not in starts:
            raise ApiError(400, f"Bad Request: can't parse entities: entity {entity} splits a character")
        if kind == "text_link" and not isinstance(entity.get("url"), str):
            raise ApiError(400, "Bad Request: can't parse entities: text_link without url")
        spans.append((offset, end, str(kind)))
    for i, (a_start, a_end, a_kind) in enumerate(spans):
        for b_start, b_end, b_kind in spans[i + 1 :]:
            if a_end <= b_start or b_end <= a_start:
                continue
            _check_pair((a_start, a_end, a_kind), (b_start, b_end, b_kind))
    return list(raw)


def _check_pair(a: tuple[int, int, str], b: tuple[int, int, str]) -> None:
    a_in_b = b[0] <= a[0] and a[1] <= b[1]
    b_in_a = a[0] <= b[0] and b[1] <= a[1]
    if not (a_in_b or b_in_a):
        raise ApiError(400, f"Bad Request: can't parse entities: {a[2]} and {b[2]} overlap without nesting")
    inner, outer = (a, b) if a_in_b else (b, a)
    if outer[2] in ("pre", "code") and inner[2] in ("pre", "code") and inner[:2] == outer[:2]:
        return  # one span typed twice is merged by Telegram
    if outer[2] in _QUOTES and inner[2] in _QUOTES:
        raise ApiError(400, "Bad Request: can't parse entities: blockquotes can't be nested")
    if outer[2] in ("pre", "code") or inner[2] in ("pre", "code"):
        if outer[2] in _QUOTES:
            return
        raise ApiError(400, f"Bad Request: can't parse entities: {outer[2]} can't contain {inner[2]}")
    if inner[2] not in _STYLES and outer[2] not in _STYLES | _QUOTES:
        raise ApiError(400, f"Bad Request: can't parse entities: {outer[2]} can't contain {inner[2]}")


def _unit_starts(text: str) -> set[int]:
    starts = {0}
    total = 0
    for char in text:
        total += 2 if ord(char) > 0xFFFF else 1
        starts.add(total)
    return starts


@dataclass(frozen=True, slots=True)
class FloodRules:
    """At most ``(count, seconds)`` messages per private chat, per group, and in all."""

    chat: tuple[int, float] = (1, 1.0)
    group: tuple[int, float] = (20, 60.0)
    total: tuple[int, float] = (30, 1.0)
    retry_after: int = 5


@dataclass
class Flood:
    """The fake's flood bookkeeping."""

    rules: FloodRules | None = None
    sent: dict[int, deque[float]] = field(default_factory=dict)
    blocked: dict[int, float] = field(default_factory=dict)
    violations: int = 0

    def block(self, chat: int, retry_after: int, now: float) -> None:
        """A 429 was answered for ``chat``: it may not come back before ``retry_after`` s."""
        self.blocked[chat] = max(self.blocked.get(chat, 0.0), now + retry_after)

    def admit(self, method: str, chat: int | None, now: float) -> None:
        """Count one request, or raise the 429 Telegram would answer."""
        if chat is None or method not in LIMITED:
            return
        until = self.blocked.get(chat, 0.0)
        if now < until:
            self.violations += 1  # counted always; refused only when the fake plays Telegram's limits
            if self.rules is not None:
                raise ApiError(429, "Too Many Requests: retry after", math.ceil(until - now))
        if self.rules is None:
            return
        rule = self.rules.group if chat < 0 else self.rules.chat
        for key, (count, seconds) in ((chat, rule), (0, self.rules.total)):
            window = self.sent.setdefault(key, deque())
            while window and window[0] <= now - seconds:
                window.popleft()
            if len(window) >= count:
                self.violations += 1
                self.block(chat, self.rules.retry_after, now)
                raise ApiError(429, "Too Many Requests: retry after", self.rules.retry_after)
        for key in (chat, 0):
            self.sent[key].append(now)
