"""The response: the wire contract shared by the webhook, the inbox and the sender.

This module holds the model (what a response is, how it is shown to the model
inside the channel tag, how it is built in code and from cctelegram's shapes);
what a body must be to become one is checked in :mod:`mcp_cascade.validation`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from mcp_cascade.errors import FieldError, InvalidResponse
from mcp_cascade.validation import CORRELATION_RE, parse_body, validate

ResponseType = Literal["message", "callback", "permission"]

_META_KEY_RE = re.compile(r"^[A-Za-z0-9_]+$")
# "<channel", "</channel", "< / CHANNEL": what could open or close the tag around the content.
_TAG_RE = re.compile(r"<(\s*/?\s*channel)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class User:
    """The Telegram sender."""

    id: int
    username: str | None = None
    first_name: str | None = None

    def label(self) -> str:
        """The name a person would recognise: @username, first name, or the numeric id."""
        if self.username:
            return "@" + self.username
        return self.first_name or str(self.id)


@dataclass(frozen=True, slots=True)
class Response:
    """One answer from a person, validated against the schema."""

    id: str
    type: ResponseType
    user: User
    timestamp: str
    correlation_id: str
    text: str | None = None
    callback_data: str | None = None
    request_id: str | None = None
    behavior: Literal["allow", "deny"] | None = None
    chat_id: int | None = None
    message_id: int | None = None
    session: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """A monitoring probe (``meta.synthetic == "true"``): recorded, never shown to the model."""
        return self.meta.get("synthetic") == "true"

    def to_dict(self) -> dict[str, Any]:
        """The wire form, without empty optional fields."""
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "user": {
                k: v
                for k, v in (
                    ("id", self.user.id),
                    ("username", self.user.username),
                    ("first_name", self.user.first_name),
                )
                if v is not None
            },
            "timestamp": self.timestamp,
            "correlation_id": self.correlation_id,
        }
        for key in ("text", "callback_data", "request_id", "behavior", "chat_id", "message_id", "session"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.meta:
            body["meta"] = dict(self.meta)
        return body

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    def content(self) -> str:
        """What the model reads inside the channel tag; it can neither close that tag nor open another."""
        if self.type == "message":
            return neutralize(self.text or "")
        if self.type == "callback":
            return neutralize(self.callback_data or "")
        return f"{self.behavior} {self.request_id}"

    def channel_meta(self, tier: int, *, redelivered: bool = False) -> dict[str, str]:
        """The channel tag's attributes: only keys Claude Code keeps (``[A-Za-z0-9_]``)."""
        meta = {k: neutralize(v) for k, v in self.meta.items() if _META_KEY_RE.match(k)}
        meta.update(
            response_id=self.id,
            correlation_id=self.correlation_id,
            type=self.type,
            user=neutralize(self.user.label()),
            tier=str(tier),
        )
        if self.chat_id is not None:
            meta["chat_id"] = str(self.chat_id)
        if self.request_id is not None:
            meta["request_id"] = self.request_id
        if self.callback_data is not None and self.type == "callback":
            meta["callback_data"] = neutralize(self.callback_data)
        if redelivered:
            meta["redelivered"] = "true"
        return meta


def neutralize(text: str) -> str:
    """``text`` with every ``<`` that would start a channel tag escaped as ``&lt;`` (the rest untouched)."""
    return _TAG_RE.sub(r"&lt;\1", text)


def now_rfc3339() -> str:
    """The current UTC time in RFC 3339 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_correlation_id() -> str:
    """A fresh correlation id (UUID 4)."""
    return str(uuid.uuid4())


def from_dict(data: Any, *, correlation_id: str | None = None, trusted: bool = False) -> Response:
    """Validate ``data`` and build a Response; a missing correlation id is filled in.

    ``trusted`` skips validation, for bodies this package validated before storing them.
    """
    if not isinstance(data, dict):
        raise InvalidResponse("malformed", [FieldError("$", "body must be a JSON object")])
    errors = [] if trusted else validate(data)
    if errors:
        raise InvalidResponse("schema", errors)
    user = data["user"]
    return Response(
        id=data["id"],
        type=data["type"],
        user=User(user["id"], user.get("username"), user.get("first_name")),
        timestamp=data["timestamp"],
        correlation_id=data.get("correlation_id") or correlation_id or new_correlation_id(),
        text=data.get("text"),
        callback_data=data.get("callback_data"),
        request_id=data.get("request_id"),
        behavior=data.get("behavior"),
        chat_id=data.get("chat_id"),
        message_id=data.get("message_id"),
        session=data.get("session"),
        meta=dict(data.get("meta") or {}),
    )


def from_json(body: bytes, *, correlation_id: str | None = None) -> Response:
    """Parse and validate a wire body."""
    return from_dict(parse_body(body), correlation_id=correlation_id)


def make_response(
    *,
    type: ResponseType,
    user_id: int,
    text: str | None = None,
    callback_data: str | None = None,
    request_id: str | None = None,
    behavior: Literal["allow", "deny"] | None = None,
    id: str | None = None,
    session: str | None = None,
    chat_id: int | None = None,
    meta: Mapping[str, str] | None = None,
) -> Response:
    """Build a valid response in code (the sender's and the tests' entry point)."""
    data: dict[str, Any] = {
        "id": id or f"local:{uuid.uuid4().hex}",
        "type": type,
        "user": {"id": user_id},
        "timestamp": now_rfc3339(),
        "correlation_id": new_correlation_id(),
    }
    for key, value in (
        ("text", text),
        ("callback_data", callback_data),
        ("request_id", request_id),
        ("behavior", behavior),
        ("session", session),
        ("chat_id", chat_id),
    ):
        if value is not None:
            data[key] = value
    if meta:
        data["meta"] = dict(meta)
    return from_dict(data)


def with_session(response: Response, session: str) -> Response:
    """The same response addressed to ``session``."""
    return replace(response, session=session)


# --- legacy shapes (cctelegram), DESIGN section 7 -------------------------------------------------


def _legacy_id(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\0")
    return "legacy:" + digest.hexdigest()[:40]


def _legacy_user(data: Mapping[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = {"id": data.get("user_id")}
    for key in ("username", "first_name"):
        if isinstance(data.get(key), str):
            user[key] = data[key]
    return user


def _legacy_timestamp(value: Any) -> str:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return now_rfc3339()
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.isoformat()
    return now_rfc3339()


def from_legacy(data: Any, *, id_source: bytes) -> Response:
    """Convert a cctelegram file or webhook body into a Response.

    The id is derived from ``id_source`` (file name and content, or the raw
    body), so the same answer maps to the same id across restarts.
    """
    if not isinstance(data, dict):
        raise InvalidResponse("malformed", [FieldError("$", "legacy body must be a JSON object")])
    body: dict[str, Any] = {
        "id": _legacy_id(id_source),
        "user": _legacy_user(data),
        "timestamp": _legacy_timestamp(data.get("timestamp")),
    }
    if data.get("callback_data") is not None:
        body["type"] = "callback"
        body["callback_data"] = data.get("callback_data")
    elif data.get("message_text") is not None:
        body["type"] = "message"
        body["text"] = data.get("message_text")
    else:
        raise InvalidResponse(
            "schema", [FieldError("$", "legacy body has neither callback_data nor message_text")]
        )
    if isinstance(data.get("original_message_id"), int):
        body["message_id"] = data["original_message_id"]
    if isinstance(data.get("correlation_id"), str) and CORRELATION_RE.match(data["correlation_id"]):
        body["correlation_id"] = data["correlation_id"]
    return replace(from_dict(body), meta={"source": "legacy"})  # server-set: no body may carry it


def is_legacy_webhook(data: Any) -> bool:
    """True for the cctelegram webhook draft's body shape."""
    return isinstance(data, dict) and data.get("type") == "telegram_response"
