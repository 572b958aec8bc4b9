"""A local stand-in for the Telegram Bot API (``/bot<token>/<method>``, Telegram's error shapes).

Topics, reactions and files: :mod:`~mcp_cascade.testing.fake_forum`; entity and flood checks:
:mod:`~mcp_cascade.testing.fake_rules`. A test plays the person (:meth:`FakeTelegram.message`,
:meth:`FakeTelegram.tap`), reads what the bot sent (:meth:`FakeTelegram.messages`) and injects
faults (:meth:`FakeTelegram.fail`); ``/_fake/`` serves the same over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_cascade.testing import fake_rules as rules
from mcp_cascade.testing.fake_control import control_routes
from mcp_cascade.testing.fake_forum import Forum, ForumState
from mcp_cascade.testing.fake_rules import Flood, FloodRules
from mcp_cascade.testing.fake_types import (
    BOT_USER,
    ApiError,
    ApiFault,
    AsciiJSONResponse,
    BotMessage,
    Call,
    FakeUser,
    utf16_len,
)

__all__ = [
    "ApiError",
    "ApiFault",
    "BotMessage",
    "Call",
    "FakeTelegram",
    "FakeUser",
    "FloodRules",
    "utf16_len",
]
from mcp_cascade.asgi import bind_socket, serve_asgi

_JSON_PARAMS = ("reply_markup", "reply_parameters", "allowed_updates", "entities", "reaction")
_INT_PARAMS = ("chat_id", "message_id", "offset", "limit", "reply_to_message_id", "message_thread_id")


@dataclass
class _State:
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1
    confirmed: int = 0
    next_message_id: dict[int, int] = field(default_factory=dict)
    messages: dict[tuple[int, int], BotMessage] = field(default_factory=dict)
    callbacks: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    poll_generation: int = 0


class FakeTelegram(Forum):
    """The fake Bot API and the person's side of the chat; ``flood``: play Telegram's flood limits."""

    def __init__(self, *, token: str | None = None, flood: FloodRules | None = None) -> None:
        self.token = token
        self.forum = ForumState(token=token)
        self.flood = Flood(flood)
        self.base_url = ""
        self.calls: list[Call] = []
        self.faults: list[ApiFault] = []
        self._state = _State()
        self._changed = anyio.Event()
        self._closing = False
        self.app = self._build_app()

    # --- the person's side ------------------------------------------------------------------

    def _message_id(self, chat_id: int) -> int:
        n = self._state.next_message_id.get(chat_id, 0) + 1
        self._state.next_message_id[chat_id] = n
        return n

    def _push_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._state.next_update_id, kind: payload}
        self._state.next_update_id += 1
        self._state.updates.append(update)
        self._poke()
        return update

    def message(
        self,
        user: FakeUser,
        text: str,
        *,
        chat_id: int | None = None,
        reply_to: int | None = None,
        thread: int | None = None,
        forwarded_from: FakeUser | None = None,
    ) -> dict[str, Any]:
        """The person sends ``text`` (a reply to the bot's message ``reply_to``; in topic ``thread``).

        With ``forwarded_from`` the person forwards a message that person wrote.
        """
        chat = user.id if chat_id is None else chat_id
        body: dict[str, Any] = {"text": text}
        if forwarded_from is not None:
            body["forward_origin"] = {
                "type": "user",
                "date": int(time.time()),
                "sender_user": forwarded_from.to_api(),
            }
        if reply_to is not None:
            original = self._state.messages.get((chat, reply_to))
            body["reply_to_message"] = (
                original.to_api()
                if original
                else {"message_id": reply_to, "date": 0, "chat": self.chat_of(chat)}
            )
        return self.person_message(user, chat, thread, body)

    def tap(self, user: FakeUser, message: BotMessage | tuple[int, int], data: str) -> dict[str, Any]:
        """The person taps a button carrying ``data`` under a bot message (no check that it exists)."""
        chat_id, message_id = (
            (message.chat_id, message.message_id) if isinstance(message, BotMessage) else message
        )
        original = self._state.messages.get((chat_id, message_id))
        query_id = f"{user.id}{self._state.next_update_id:08d}"
        self._state.callbacks[query_id] = None
        query: dict[str, Any] = {
            "id": query_id,
            "from": user.to_api(),
            "chat_instance": str(chat_id),
            "data": data,
            "message": original.to_api()
            if original
            else {"message_id": message_id, "date": 0, "chat": {"id": chat_id, "type": "private"}},
        }
        return self._push_update("callback_query", query)

    def press(self, user: FakeUser, message: BotMessage, label: str) -> dict[str, Any]:
        """The person taps the button labelled ``label``."""
        for button in message.buttons():
            if button.get("text") == label:
                return self.tap(user, message, str(button["callback_data"]))
        raise LookupError(f"no button {label!r} on message {message.message_id}: {message.buttons()}")

    # --- what the bot did -------------------------------------------------------------------

    def messages(self, chat_id: int | None = None) -> list[BotMessage]:
        """The bot's messages (current state), oldest first."""
        return [m for m in self._state.messages.values() if chat_id is None or m.chat_id == chat_id]

    def callback_answer(self, query_id: str) -> dict[str, Any] | None:
        """How the bot answered a tap (its toast), or None while unanswered."""
        return self._state.callbacks.get(query_id)

    def callback_answers(self) -> dict[str, dict[str, Any] | None]:
        """Every tap the bot was shown, with its answer (None while unanswered)."""
        return dict(self._state.callbacks)

    @property
    def polls(self) -> int:
        """getUpdates requests received so far (counted on arrival, before any long-poll wait)."""
        return self._state.poll_generation

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates offset."""
        return len(self._state.updates)

    def calls_of(self, method: str) -> list[Call]:
        """Every request of ``method``, oldest first."""
        return [c for c in self.calls if c.method == method]

    def fail(
        self,
        method: str,
        status: int | None = None,
        *,
        retry_after: int | None = None,
        delay_s: float = 0.0,
        times: int = 1,
        description: str | None = None,
        after: int = 0,
    ) -> None:
        """After ``after`` calls, make the next ``times`` calls of ``method`` slow and/or fail."""
        self.faults.append(ApiFault(method, status, retry_after, delay_s, times, description, after))

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every change); return its value."""
        with anyio.fail_after(timeout):
            while not (value := predicate()):
                await self._changed.wait()
        return value

    def _poke(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    # --- the Bot API ------------------------------------------------------------------------

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            body = await request.body()
            if body:
                params.update(json.loads(body))
        elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            async with request.form() as form:
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
                params["_files"] = {
                    k: (v.filename or k, await v.read()) for k, v in form.items() if not isinstance(v, str)
                }
        for key in _JSON_PARAMS:
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        for key in _INT_PARAMS:
            if isinstance(params.get(key), str):
                params[key] = int(params[key])
        if isinstance(params.get("timeout"), str):
            params["timeout"] = float(params["timeout"])
        return params

    async def _endpoint(self, request: Request) -> Response:
        method = request.path_params["method"]
        status = 200
        params: dict[str, Any] = {}
        try:
            if self.token is not None and request.path_params["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            try:
                params = await self._params(request)
            except (ValueError, TypeError) as exc:
                raise ApiError(400, f"Bad Request: cannot parse parameters: {exc}") from exc
            await self._apply_fault(method, params)
            self.flood.admit(method, rules.chat_param(params), time.monotonic())
            handler = self._methods.get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
            return AsciiJSONResponse({"ok": True, "result": result})
        except ApiError as exc:
            status = exc.status
            return exc.response()
        finally:
            params.pop("_files", None)
            self.calls.append(Call(method, time.monotonic(), status, params))
            self._poke()

    async def _apply_fault(self, method: str, params: dict[str, Any]) -> None:
        for fault in self.faults:
            if fault.times > 0 and fault.method in (method, "*"):
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.times -= 1
                if fault.delay_s:
                    await anyio.sleep(fault.delay_s)
                if fault.status is not None:
                    default = (
                        "Too Many Requests: retry later" if fault.status == 429 else "Internal Server Error"
                    )
                    chat = rules.chat_param(params)
                    if fault.status == 429 and fault.retry_after and chat is not None:
                        self.flood.block(chat, fault.retry_after, time.monotonic())
                    raise ApiError(fault.status, fault.description or default, fault.retry_after)
                return

    @property
    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "getMe": self._get_me,
            "deleteWebhook": self._true,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_text,
            "editMessageReplyMarkup": self._edit_markup,
            "answerCallbackQuery": self._answer_callback,
            "setMessageReaction": self._set_reaction,
            "createForumTopic": self._create_topic,
            "editForumTopic": self._edit_topic,
            "closeForumTopic": self._close_topic,
            "reopenForumTopic": self._reopen_topic,
            "getFile": self._get_file,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
        }

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return BOT_USER

    async def _true(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        state = self._state
        offset = params.get("offset")
        if isinstance(offset, int) and offset > 0:
            state.updates = [u for u in state.updates if u["update_id"] >= offset]
            state.confirmed = max(state.confirmed, offset)
        state.poll_generation += 1
        mine = state.poll_generation
        self._poke()  # an older poll still waiting ends with 409, as on Telegram
        limit = int(params.get("limit") or 100)
        with anyio.move_on_after(float(params.get("timeout") or 0)):
            while not state.updates and not self._closing:
                await self._changed.wait()
                if state.poll_generation != mine:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
        return state.updates[:limit]

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        text = rules.check_text(params)
        entities = rules.check_entities(text, params.get("entities"))
        markup = rules.check_markup(params.get("reply_markup"))
        chat_id = int(params["chat_id"])
        thread = self.check_thread(chat_id, params.get("message_thread_id"))
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        message = BotMessage(
            chat_id,
            self._message_id(chat_id),
            text,
            markup,
            reply_to or params.get("reply_to_message_id"),
            thread=thread,
            entities=entities or None,
        )
        self._stored(message)
        return message.to_api()

    def _stored(self, message: BotMessage) -> None:
        self._state.messages[(message.chat_id, message.message_id)] = message

    def _find(self, params: dict[str, Any]) -> BotMessage:
        message = self._state.messages.get((int(params.get("chat_id", 0)), int(params.get("message_id", 0))))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    async def _edit_text(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find(params)
        text = rules.check_text(params)
        markup = rules.check_markup(params.get("reply_markup"))
        if text == message.text and markup == message.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified")
        message.text, message.reply_markup = text, markup
        message.edits += 1
        return message.to_api()

    async def _edit_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find(params)
        markup = rules.check_markup(params.get("reply_markup"))
        if markup == message.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified")
        message.reply_markup = markup
        message.edits += 1
        return message.to_api()

    async def _answer_callback(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._state.callbacks or self._state.callbacks[query_id] is not None:
            raise ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        self._state.callbacks[query_id] = {"text": params.get("text"), "show_alert": params.get("show_alert")}
        return True

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
                *control_routes(self),
            ]
        )

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[FakeTelegram]:
        """Serve on ``host:port`` (0: any free port) until the block exits; sets :attr:`base_url`."""
        sock = bind_socket(host, port, key="port")
        bound_port = sock.getsockname()[1]
        async with serve_asgi(self.app, sock):
            self.base_url = f"http://{host}:{bound_port}/bot"
            try:
                yield self
            finally:
                self._closing = True  # a long poll still waiting returns now, not after uvicorn's grace
                self._poke()
