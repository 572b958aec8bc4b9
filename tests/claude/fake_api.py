"""A fake Anthropic Messages API for the real Claude Code client.

The client only calls ``POST /v1/messages`` (always streaming) and, from the
TUI, ``HEAD /api/hello``. Every request body is logged; a reply is chosen by
the first :class:`Rule` whose trigger appears in the request's last user turn,
so the client's side requests (titles, summaries) get a plain answer and never
consume a scripted one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mcp_cascade.asgi import bind_socket, serve_asgi

MODEL = "claude-fake-1"


@dataclass(frozen=True, slots=True)
class Text:
    """A text block in a reply."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A tool_use block in a reply."""

    name: str
    input: Mapping[str, Any]
    id: str


Block = Text | ToolUse


@dataclass(frozen=True, slots=True)
class Rule:
    """Answer ``blocks`` to the first request whose newest user turn contains ``trigger`` (once),
    among the requests that offer the tools ``blocks`` call."""

    trigger: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Logged:
    """One request the client sent (its JSON body, if any), with its arrival time (``time.perf_counter``)."""

    at: float
    path: str
    body: Mapping[str, Any]

    def text(self) -> str:
        """Every text the request's messages carry (turns, tool results), as one string."""
        return "\n".join(_texts(self.body.get("messages", [])))

    def last_turn_text(self) -> str:
        """The texts of the last user message: what the client has just added."""
        return _last_user_text(self.body)

    def tool_names(self) -> set[str]:
        """The tools the request offers the model (none on the client's side requests, such as titles)."""
        return {str(t.get("name")) for t in self.body.get("tools") or [] if isinstance(t, dict)}

    def tool_results(self) -> dict[str, str]:
        """``tool_use_id`` → the result's text, for every tool_result in the request."""
        found: dict[str, str] = {}
        for message in self.body.get("messages", []):
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    found[str(block.get("tool_use_id"))] = "\n".join(_texts([{"content": block["content"]}]))
        return found


def _last_user_text(body: Mapping[str, Any]) -> str:
    # The client may put role "system" items after the newest user turn.
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return "\n".join(_texts(users[-1:]))


def _texts(messages: Any) -> Iterator[str]:
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text":
                    yield str(block.get("text", ""))
                elif block.get("type") == "tool_result":
                    yield from _texts([{"content": block.get("content")}])


@dataclass
class FakeMessagesAPI:
    """The fake API's state: scripted rules, the request log, and a wake-up on every request."""

    rules: list[Rule] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _count: int = 0

    def script(self, trigger: str, *blocks: Block) -> None:
        """Add a rule: the next request whose last turn contains ``trigger`` is answered with ``blocks``."""
        self.rules.append(Rule(trigger, blocks))

    def messages(self) -> list[Logged]:
        """The logged ``/v1/messages`` requests."""
        return [item for item in self.log if item.path == "/v1/messages"]

    async def wait_for(self, predicate: Callable[[Logged], bool], timeout: float) -> Logged:
        """The first logged request matching ``predicate``, waiting up to ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            while True:
                for item in self.messages():
                    if predicate(item):
                        return item
                await self._changed.wait()
        newest = [item.last_turn_text()[-300:] for item in self.messages()[-3:]]
        raise TimeoutError(f"no matching request in {timeout} s; newest user turns: {newest}")

    def _reply(self, request: Logged) -> tuple[Block, ...]:
        last = request.last_turn_text()
        offered = request.tool_names()
        for rule in self.rules:
            # A side request (a title, say) quotes the prompt too, but offers no tools: never script it.
            wanted = {b.name for b in rule.blocks if isinstance(b, ToolUse)}
            if rule.trigger in last and wanted <= offered:
                self.rules.remove(rule)
                return rule.blocks
        return (Text("ok"),)

    async def _record(self, request: Request) -> Logged:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"unparsed_bytes": len(raw)}
        logged = Logged(time.perf_counter(), request.url.path, body)
        self.log.append(logged)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        return logged

    async def _messages(self, request: Request) -> Response:
        logged = await self._record(request)
        body = logged.body
        self._count += 1
        message_id = f"msg_fake_{self._count}"
        blocks = self._reply(logged)
        if not body.get("stream"):
            return JSONResponse(_message(message_id, blocks))
        return StreamingResponse(_stream(message_id, blocks), media_type="text/event-stream")

    async def _hello(self, request: Request) -> Response:
        await self._record(request)
        return Response(status_code=200)

    async def _count_tokens(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"input_tokens": 1})

    async def _other(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"type": "error", "error": {"type": "not_found_error"}}, status_code=404)

    def app(self) -> Starlette:
        """The Starlette app."""
        return Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route("/api/hello", self._hello, methods=["GET", "HEAD"]),
                Route("/{path:path}", self._other, methods=["GET", "HEAD", "POST", "PUT", "DELETE"]),
            ]
        )

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Listen on 127.0.0.1 (any free port) of the caller's network; yields the base URL."""
        sock = bind_socket("127.0.0.1", 0, key="fake model API")
        async with serve_asgi(self.app(), sock):
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _usage() -> dict[str, int]:
    return {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _stop_reason(blocks: tuple[Block, ...]) -> str:
    return "tool_use" if any(isinstance(b, ToolUse) for b in blocks) else "end_turn"


def _block_json(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)}


def _message(message_id: str, blocks: tuple[Block, ...]) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [_block_json(b) for b in blocks],
        "stop_reason": _stop_reason(blocks),
        "stop_sequence": None,
        "usage": _usage(),
    }


def _event(kind: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


async def _stream(message_id: str, blocks: tuple[Block, ...]) -> AsyncIterator[bytes]:
    start = {**_message(message_id, ()), "stop_reason": None}
    yield _event("message_start", {"message": start})
    for index, block in enumerate(blocks):
        if isinstance(block, Text):
            yield _event(
                "content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}
            )
            delta: dict[str, Any] = {"type": "text_delta", "text": block.text}
        else:
            opening = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            yield _event("content_block_start", {"index": index, "content_block": opening})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(dict(block.input))}
        yield _event("content_block_delta", {"index": index, "delta": delta})
        yield _event("content_block_stop", {"index": index})
    yield _event(
        "message_delta",
        {
            "delta": {"stop_reason": _stop_reason(blocks), "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    )
    yield _event("message_stop", {})
