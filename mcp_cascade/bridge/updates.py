"""Telegram updates in the few shapes the bridge acts on, and the small texts it parses.

``callback_data`` of the bridge's own buttons is ``<kind>:<token>:<choice>``
(at most 20 bytes): ``q:<token>:<option index>`` for an ask_user option and
``p:<token>:a`` / ``p:<token>:d`` for Allow / Deny; the token names a prompt in
the ledger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from telegram import Update

from mcp_cascade.errors import Poisoned
from mcp_cascade.response import User

# Claude Code's permission request ids: five letters from a-z without l (it reads like 1 or I).
_VERDICT = re.compile(r"^\s*(y|yes|n|no)\s+([a-km-z]{5})\s*$", re.IGNORECASE)
_CALLBACK = re.compile(r"^(q|p):([0-9a-f]{10}):([0-9]{1,2}|a|d)$")
_COMMAND = re.compile(r"^/([A-Za-z_]+)(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A photo, document or voice note a person sent (still on Telegram's side)."""

    file_id: str
    kind: Literal["photo", "document", "voice"]
    name: str
    mime: str
    size: int | None


@dataclass(frozen=True, slots=True)
class Incoming:
    """One update from a person: a message or a button tap."""

    update_id: int
    kind: Literal["message", "callback", "other"]
    user: User
    chat_id: int
    message_id: int
    timestamp: str
    text: str | None = None
    reply_to: int | None = None
    callback_id: str | None = None
    callback_data: str | None = None
    thread: int | None = None  # the forum topic it was written in
    forum: bool = False  # the chat is a forum supergroup
    file: Attachment | None = None
    # Someone else's words passed on (Telegram's forward_origin): never an approval.
    forwarded: bool = False

    @property
    def response_id(self) -> str:
        """The idempotency key of the response this update becomes (DESIGN 5)."""
        if self.kind == "callback":
            return f"tg:cb:{self.callback_id}"
        return f"tg:{self.chat_id}:{self.message_id}"


def scalar(text: str) -> str:
    """``text`` as Unicode scalar values: a surrogate pair written as two halves is joined, a lone half
    (text sliced by UTF-16 offsets, as Telegram's entity offsets invite) becomes U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _scalar(text: str | None, limit: int | None = None) -> str | None:
    return None if text is None else scalar(text)[:limit]


def _id(value: Any, field: str) -> int:
    """A Telegram id the stores and the wire can keep (a signed 64-bit integer), else the update is poison."""
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    raise Poisoned("update", f"{field}: {str(value)[:40]!r} is not a signed 64-bit integer")


def _user(user: Any, field: str) -> User:
    # The response schema's limits: Telegram's own are lower (32 and 64), so only a forged update is cut.
    return User(
        _id(user.id, f"{field}.id"), _scalar(user.username or None, 64), _scalar(user.first_name or None, 256)
    )


def _stamp(date: datetime | None) -> str:
    moment = date or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def incoming(update: Update) -> Incoming | None:
    """What the bridge sees in an update; None for updates without a person behind them.

    Text is repaired into scalar values (see :func:`scalar`); Poisoned when an id does not fit 64 bits.
    """
    query = update.callback_query
    if query is not None:
        message = query.message
        if message is None or query.from_user is None:
            return None
        return Incoming(
            update.update_id,
            "callback",
            _user(query.from_user, "callback_query.from"),
            _id(message.chat.id, "callback_query.message.chat.id"),
            _id(message.message_id, "callback_query.message.message_id"),
            _stamp(None),
            callback_id=scalar(query.id),
            callback_data=_scalar(query.data),
        )
    message = update.message
    if message is None or message.from_user is None:
        return None
    text = _scalar(message.text if message.text is not None else message.caption)
    file = _attachment(message)
    if file is not None and text is None:
        text = f"[{file.kind}: {file.name}]"
    return Incoming(
        update.update_id,
        "message" if text is not None else "other",
        _user(message.from_user, "message.from"),
        _id(message.chat.id, "message.chat.id"),
        _id(message.message_id, "message.message_id"),
        _stamp(message.date),
        text=text,
        reply_to=_reply_to(message),
        thread=_id(message.message_thread_id, "message.message_thread_id")
        if message.is_topic_message
        else None,
        forum=bool(message.chat.is_forum),
        forwarded=message.forward_origin is not None,
        file=file,
    )


def _attachment(message: Any) -> Attachment | None:
    if message.photo:
        best = message.photo[-1]  # Telegram lists the sizes smallest first
        return Attachment(
            best.file_id, "photo", f"photo-{message.message_id}.jpg", "image/jpeg", best.file_size
        )
    if message.document is not None:
        doc = message.document
        name = scalar(doc.file_name or f"document-{message.message_id}")
        mime = scalar(doc.mime_type or "application/octet-stream")[:255]
        return Attachment(doc.file_id, "document", name, mime, doc.file_size)
    if message.voice is not None:
        voice = message.voice
        mime = scalar(voice.mime_type or "audio/ogg")[:255]
        return Attachment(voice.file_id, "voice", f"voice-{message.message_id}.ogg", mime, voice.file_size)
    return None


def _reply_to(message: Any) -> int | None:
    """The bot message this one answers (in a topic, the topic's own first message does not count)."""
    original = message.reply_to_message
    if original is None or (message.is_topic_message and original.message_id == message.message_thread_id):
        return None
    return _id(original.message_id, "message.reply_to_message.message_id")


@dataclass(frozen=True, slots=True)
class ButtonData:
    """A decoded button of the bridge's own."""

    kind: Literal["q", "p"]
    token: str
    choice: str


def button_data(kind: Literal["q", "p"], token: str, choice: str) -> str:
    """Encode a button's callback_data."""
    return f"{kind}:{token}:{choice}"


def parse_button(data: str | None) -> ButtonData | None:
    """Decode callback_data; None for anything the bridge did not make."""
    match = _CALLBACK.match(data or "")
    if match is None:
        return None
    kind: Literal["q", "p"] = "q" if match.group(1) == "q" else "p"
    return ButtonData(kind, match.group(2), match.group(3))


def parse_verdict(text: str) -> tuple[Literal["allow", "deny"], str] | None:
    """``yes abcde`` / ``no abcde`` → (behavior, request id)."""
    match = _VERDICT.match(text)
    if match is None:
        return None
    behavior: Literal["allow", "deny"] = "allow" if match.group(1).lower().startswith("y") else "deny"
    return behavior, match.group(2).lower()


def parse_command(text: str) -> tuple[str, str] | None:
    """``/use name`` → ("use", "name"); None when ``text`` is not a command."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()
