"""HTTP controls of the fake Bot API (``/_fake/...``): play the person, read what the bot sent, inject faults.

For people trying the bridge without a token, and for tests in other languages::

    POST /_fake/message  {"user_id": 1, "text": "hi", "reply_to": 3?, "chat_id": 1?, "username": "a"?}
    POST /_fake/tap      {"user_id": 1, "message_id": 3, "button": "Allow"} (or "data": "<callback_data>")
    GET  /_fake/messages?chat_id=1       the bot's messages, with their buttons
    GET  /_fake/answers                  the bot's answers to taps (toasts)
    GET  /_fake/calls?method=getUpdates  every Bot API request
    POST /_fake/fault    {"method": "sendMessage", "status": 429, "retry_after": 2, "times": 1, "delay_s": 0}
    GET  /_fake/state    pending updates and counters
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_cascade.testing.fake_types import BotMessage, Call, FakeUser


class Controlled(Protocol):
    """What the controls drive: the fake Bot API (:class:`~mcp_cascade.testing.fake_api.FakeTelegram`)."""

    base_url: str
    calls: list[Call]

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates offset."""

    def message(
        self, user: FakeUser, text: str, *, chat_id: int | None = None, reply_to: int | None = None
    ) -> dict[str, Any]:
        """The person sends ``text``."""

    def tap(self, user: FakeUser, message: BotMessage | tuple[int, int], data: str) -> dict[str, Any]:
        """The person taps a button carrying ``data``."""

    def press(self, user: FakeUser, message: BotMessage, label: str) -> dict[str, Any]:
        """The person taps the button labelled ``label``."""

    def messages(self, chat_id: int | None = None) -> list[BotMessage]:
        """The bot's messages."""

    def callback_answers(self) -> dict[str, dict[str, Any] | None]:
        """The bot's answers to taps."""

    def fail(
        self,
        method: str,
        status: int | None = None,
        *,
        retry_after: int | None = None,
        delay_s: float = 0.0,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next calls of ``method`` slow and/or fail."""


class _BadControl(Exception):
    pass


def _int(data: dict[str, Any], key: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadControl(f"{key} must be an integer")
    return value


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise _BadControl(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _BadControl("body must be a JSON object")
    return data


def control_routes(fake: Controlled) -> list[BaseRoute]:
    """The ``/_fake`` routes bound to ``fake``."""

    def user_of(data: dict[str, Any]) -> FakeUser:
        username = data.get("username", "alice")
        return FakeUser(
            _int(data, "user_id"),
            str(data.get("first_name", "Alice")),
            str(username) if username else None,
        )

    async def message(request: Request) -> Response:
        data = await _body(request)
        text = data.get("text")
        if not isinstance(text, str) or not text:
            raise _BadControl("text must be a non-empty string")
        reply_to = _int(data, "reply_to") if data.get("reply_to") is not None else None
        chat_id = _int(data, "chat_id") if data.get("chat_id") is not None else None
        update = fake.message(user_of(data), text, chat_id=chat_id, reply_to=reply_to)
        return JSONResponse({"update_id": update["update_id"], "message_id": update["message"]["message_id"]})

    async def tap(request: Request) -> Response:
        data = await _body(request)
        user = user_of(data)
        chat_id = _int(data, "chat_id", user.id)
        message_id = _int(data, "message_id")
        target = next((m for m in fake.messages(chat_id) if m.message_id == message_id), None)
        if isinstance(data.get("button"), str):
            if target is None:
                raise _BadControl(f"the bot sent no message {message_id} in chat {chat_id}")
            try:
                update = fake.press(user, target, data["button"])
            except LookupError as exc:
                raise _BadControl(str(exc)) from exc
        elif isinstance(data.get("data"), str):
            update = fake.tap(user, (chat_id, message_id), data["data"])
        else:
            raise _BadControl("give button (its label) or data (its callback_data)")
        return JSONResponse(
            {"update_id": update["update_id"], "callback_query_id": update["callback_query"]["id"]}
        )

    async def messages(request: Request) -> Response:
        raw = request.query_params.get("chat_id")
        if raw is not None and not raw.lstrip("-").isdigit():
            raise _BadControl("chat_id must be an integer")
        return JSONResponse([asdict(m) for m in fake.messages(int(raw) if raw else None)])

    async def answers(request: Request) -> Response:
        return JSONResponse(fake.callback_answers())

    async def calls(request: Request) -> Response:
        method = request.query_params.get("method")
        return JSONResponse(
            [
                {"method": c.method, "at": c.at, "status": c.status}
                for c in fake.calls
                if method is None or c.method == method
            ]
        )

    async def fault(request: Request) -> Response:
        data = await _body(request)
        if not isinstance(data.get("method"), str):
            raise _BadControl("method must be a Bot API method name or '*'")
        status = _int(data, "status") if data.get("status") is not None else None
        retry_after = _int(data, "retry_after") if data.get("retry_after") is not None else None
        delay = data.get("delay_s", 0)
        if not isinstance(delay, int | float) or delay < 0:
            raise _BadControl("delay_s must be a number of seconds")
        fake.fail(
            data["method"],
            status,
            retry_after=retry_after,
            delay_s=float(delay),
            times=_int(data, "times", 1),
        )
        return JSONResponse({"ok": True})

    async def state(request: Request) -> Response:
        return JSONResponse(
            {
                "base_url": fake.base_url,
                "pending_updates": fake.pending_updates,
                "messages": len(fake.messages()),
                "calls": len(fake.calls),
            }
        )

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _BadControl as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return run

    return [
        Route("/_fake/message", guarded(message), methods=["POST"]),
        Route("/_fake/tap", guarded(tap), methods=["POST"]),
        Route("/_fake/messages", guarded(messages), methods=["GET"]),
        Route("/_fake/answers", guarded(answers), methods=["GET"]),
        Route("/_fake/calls", guarded(calls), methods=["GET"]),
        Route("/_fake/fault", guarded(fault), methods=["POST"]),
        Route("/_fake/state", guarded(state), methods=["GET"]),
    ]
