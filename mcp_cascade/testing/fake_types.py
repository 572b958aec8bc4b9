"""The fake Bot API's values: the people, the bot's messages, the calls it saw, the faults it plays."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

BOT_USER: dict[str, Any] = {
    "id": 7_000_000_001,
    "is_bot": True,
    "first_name": "Cascade",
    "username": "cascade_fake_bot",
}
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class FakeUser:
    """A person talking to the bot; in a private chat the chat id equals the user id."""

    id: int
    first_name: str = "Alice"
    username: str | None = "alice"

    def to_api(self) -> dict[str, Any]:
        """The Bot API ``User`` object."""
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        return user


@dataclass
class BotMessage:
    """A message the bot sent, as it looks now (after any edits)."""

    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None = None
    reply_to: int | None = None
    edits: int = 0
    thread: int | None = None
    entities: list[dict[str, Any]] | None = None
    file: dict[str, Any] | None = None  # sendPhoto/sendDocument: kind, name, size, data

    def buttons(self) -> list[dict[str, Any]]:
        """Every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    def to_api(self) -> dict[str, Any]:
        """The Bot API ``Message`` object."""
        message: dict[str, Any] = {
            "message_id": self.message_id,
            "date": int(time.time()),
            "chat": {"id": self.chat_id, "type": "private" if self.chat_id > 0 else "supergroup"},
            "from": BOT_USER,
        }
        if self.file is None:
            message["text"] = self.text
        else:
            message["caption"] = self.text
            key = "photo" if self.file["kind"] == "photo" else "document"
            meta = {"file_id": self.file["file_id"], "file_unique_id": self.file["file_id"]}
            meta["file_size"] = self.file["size"]
            message[key] = [{**meta, "width": 1, "height": 1}] if key == "photo" else meta
        if self.entities:
            message["entities"] = self.entities
        if self.thread is not None:
            message["message_thread_id"] = self.thread
            message["is_topic_message"] = True
        if self.reply_markup and self.reply_markup.get("inline_keyboard"):
            message["reply_markup"] = self.reply_markup
        return message


@dataclass(frozen=True, slots=True)
class Call:
    """One Bot API request as the fake saw it."""

    method: str
    at: float
    status: int
    params: Mapping[str, Any]


@dataclass
class ApiFault:
    """After ``after`` calls pass, the next ``times`` calls of ``method`` ("*" for any) wait ``delay_s``,
    then fail with ``status``."""

    method: str
    status: int | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    times: int = 1
    description: str | None = None
    after: int = 0


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped, so a lone UTF-16 surrogate half (what a client that
    slices text by UTF-16 offsets leaves) travels as ``\\udXXX``, which JSON allows, instead of failing."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


class ApiError(Exception):
    """A Bot API error answer."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        """Telegram's error body."""
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return JSONResponse(body, status_code=self.status)
