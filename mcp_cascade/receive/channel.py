"""The MCP side of ``serve``: capabilities, channel notifications, tools (thin).

Claude Code only registers a channel on the initialize handshake. When a client
opens with the 2026-07-28 ``server/discover`` probe instead, :func:`handshake_only`
answers it "method not found", which every client takes as "an older server"
and follows with ``initialize``; the SDK then serves the handshake era, where
the experimental channel capability is declared.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import anyio
import mcp_types as types
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCRequest
from pydantic import BaseModel

from mcp_cascade.errors import CascadeError
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.store import Stored
from mcp_cascade.redact import scrub
from mcp_cascade.response import Response
from mcp_cascade.wire import CHANNEL, PERMISSION, PERMISSION_REQUEST

SERVER_NAME = "mcp-cascade"

INSTRUCTIONS = """\
Answers from the user's phone (Telegram) arrive as <channel source="mcp-cascade" ...> blocks.
The text inside is what the user typed, or the data of the button they tapped.
Attributes: type (message | callback | permission), user (who answered), chat_id (the Telegram chat;
pass it to the reply tool), request_id (the ask_user question or permission prompt this answers),
response_id and correlation_id (identifiers for tracing), tier (1 webhook, 2 bridge retry, 3 inbox
file), redelivered="true" (the server restarted while delivering this; it may be a repeat),
file_path, file_mime, file_size, file_kind (a photo, document or voice note the user sent, saved at
file_path; open it from there).
To ask the user something with buttons call ask_user and then wait_for_response with the request_id.
To answer in Telegram call reply(chat_id, text, files?) (Markdown; files from this project).
Without channel blocks, call get_responses.
"""


class Outbound(Protocol):
    """What serve asks of the bridge: questions, replies and permission prompts."""

    async def ask(self, session: str, question: str, options: list[str]) -> Mapping[str, Any]:
        """Send a question with one button per option; return at least ``request_id``."""

    async def reply(
        self, session: str, chat_id: int, text: str, files: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        """Send ``text`` into ``chat_id``."""

    async def permission_request(self, session: str, request: Mapping[str, str]) -> None:
        """Relay a Claude Code permission prompt to the allowlisted user."""


class _PermissionRequestParams(BaseModel):
    # A plain BaseModel on purpose: NotificationParams' camelCase aliases drop snake_case fields.
    request_id: str
    tool_name: str = ""
    description: str = ""
    input_preview: str = ""


class FrameWriter(Protocol):
    """Writes one whole JSON-RPC line to the client; returns once it is in the pipe."""

    async def write(self, text: str) -> None:
        """Write ``text`` completely."""


class SessionPusher:
    """Writes responses into the client connection as notification frames.

    The frame goes straight to the stdout writer rather than through the SDK's
    outgoing queue: when ``push`` returns, the bytes are in the pipe, so the
    engine's "delivered" mark never runs ahead of what Claude Code can read
    (a kill -9 in between would otherwise lose the response).
    """

    def __init__(self, out: FrameWriter) -> None:
        self._out = out

    async def push(self, response: Response, tier: int, *, redelivered: bool) -> None:
        """A permission verdict leaves as the permission notification; anything else as a channel message."""
        if response.type == "permission":
            method = PERMISSION
            params: dict[str, Any] = {"request_id": response.request_id, "behavior": response.behavior}
        else:
            method = CHANNEL
            params = {
                "content": response.content(),
                "meta": response.channel_meta(tier, redelivered=redelivered),
            }
        frame = {"jsonrpc": "2.0", "method": method, "params": params}
        await self._out.write(json.dumps(frame, ensure_ascii=False, separators=(",", ":")) + "\n")


@dataclass(frozen=True, slots=True)
class ChannelDeps:
    """What the MCP server needs from serve."""

    engine: Engine
    session: str
    outbound: Outbound
    status: Callable[[], Mapping[str, Any]]
    selftest: Callable[[], Awaitable[Mapping[str, Any]]]
    permission_relay: bool
    frames: FrameWriter


def _tool(
    name: str, description: str, properties: dict[str, Any], required: list[str] | None = None
) -> types.Tool:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return types.Tool(name=name, description=description, input_schema=schema)


TOOLS = [
    _tool(
        "get_responses",
        "Answers from the user not yet acknowledged, oldest first. Pass ack=[ids] to "
        "acknowledge ones you have handled (they are then no longer returned).",
        {
            "ack": {
                "type": "array",
                "items": {"type": "string"},
                "description": "response ids to acknowledge",
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
        },
    ),
    _tool(
        "wait_for_response",
        "Wait until the user answers (optionally: answers request_id) and return that "
        "answer, acknowledged. Sends progress notifications while waiting.",
        {
            "request_id": {"type": "string"},
            "timeout_s": {"type": "number", "minimum": 0, "maximum": 3600, "default": 60},
        },
    ),
    _tool(
        "ask_user",
        "Ask the user a question in Telegram, with one button per option. Returns request_id "
        "(queued: true when Telegram makes the question wait; it is still sent, once: do not ask again); "
        "the answer arrives as a channel message with that request_id, or via wait_for_response.",
        {
            "question": {"type": "string", "minLength": 1},
            "options": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        },
        ["question"],
    ),
    _tool(
        "reply",
        "Send a message to the user in Telegram. Markdown is shown formatted; long text is split. "
        "files: paths in this project's folder to attach (images as photos, the rest as documents).",
        {
            "chat_id": {"type": "integer"},
            "text": {"type": "string", "minLength": 1},
            "files": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        },
        ["chat_id", "text"],
    ),
    _tool("cascade_status", "Delivery tiers, queue depth and recent latencies of this session.", {}),
    _tool(
        "cascade_selftest",
        "Send a synthetic response through each tier and report per-tier latency. "
        "Nothing is shown to the model or the user.",
        {},
    ),
]


def _stored_view(item: Stored) -> dict[str, Any]:
    body = item.response.to_dict()
    body["tier"] = item.tier
    body["state"] = item.state
    return body


def _text(value: Any, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(value, indent=1, default=str))], is_error=error
    )


def build_server(deps: ChannelDeps) -> Server[Any]:
    """The low-level MCP server with our tools and notification handlers."""
    engine = deps.engine

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        args = params.arguments or {}
        try:
            return await _dispatch(ctx, params.name, args)
        except CascadeError as exc:
            return _text({"error": scrub(str(exc))}, error=True)

    async def _dispatch(
        ctx: ServerRequestContext[Any], name: str, args: dict[str, Any]
    ) -> types.CallToolResult:
        if name == "get_responses":
            ack = [str(a) for a in args.get("ack") or []]
            acked = await anyio.to_thread.run_sync(engine.store.ack, ack) if ack else 0
            items = await anyio.to_thread.run_sync(engine.store.unacked, None, int(args.get("limit", 20)))
            return _text({"acknowledged": acked, "responses": [_stored_view(i) for i in items]})
        if name == "wait_for_response":
            return await _wait(ctx, args.get("request_id"), float(args.get("timeout_s", 60)))
        if name == "ask_user":
            options = [str(o) for o in args.get("options") or []]
            return _text(dict(await deps.outbound.ask(deps.session, str(args["question"]), options)))
        if name == "reply":
            return _text(
                dict(
                    await deps.outbound.reply(
                        deps.session,
                        int(args["chat_id"]),
                        str(args["text"]),
                        [str(f) for f in args.get("files") or []],
                    )
                )
            )
        if name == "cascade_status":
            return _text(dict(await anyio.to_thread.run_sync(deps.status)))
        if name == "cascade_selftest":
            return _text(dict(await deps.selftest()))
        return _text({"error": f"unknown tool {name!r}"}, error=True)

    async def _wait(
        ctx: ServerRequestContext[Any], request_id: Any, timeout_s: float
    ) -> types.CallToolResult:
        rid = str(request_id) if request_id else None
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            arrival = engine.next_arrival()
            found = await anyio.to_thread.run_sync(engine.store.unacked, rid, 1)
            if found:
                await anyio.to_thread.run_sync(engine.store.ack, [found[0].response.id])
                return _text({"status": "answered", "response": _stored_view(found[0])})
            left = deadline - time.monotonic()
            if left <= 0:
                return _text({"status": "timeout", "request_id": rid, "waited_s": timeout_s})
            with anyio.move_on_after(min(left, 1.0)):
                await arrival.wait()
            waited = timeout_s - max(0.0, deadline - time.monotonic())
            await ctx.session.report_progress(waited, timeout_s, "waiting for the user's answer")

    async def initialized(ctx: ServerRequestContext[Any], params: types.NotificationParams) -> None:
        engine.attach(SessionPusher(deps.frames))

    async def permission_request(ctx: ServerRequestContext[Any], params: _PermissionRequestParams) -> None:
        await deps.outbound.permission_request(deps.session, params.model_dump())

    server: Server[Any] = Server(
        SERVER_NAME,
        version=_version(),
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    server.add_notification_handler("notifications/initialized", types.NotificationParams, initialized)
    server.add_notification_handler(PERMISSION_REQUEST, _PermissionRequestParams, permission_request)
    return server


def capabilities(permission_relay: bool) -> dict[str, dict[str, Any]]:
    """The experimental capabilities of DESIGN 8 (permission relay only with an allowlist)."""
    caps: dict[str, dict[str, Any]] = {"claude/channel": {}}
    if permission_relay:
        caps["claude/channel/permission"] = {}
    return caps


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp-cascade")
    except PackageNotFoundError:
        return "0"


async def handshake_only(
    upstream: ObjectReceiveStream[SessionMessage | Exception],
    downstream: ObjectSendStream[SessionMessage | Exception],
    replies: ObjectSendStream[SessionMessage],
    on_refused: Callable[[str], None] = lambda method: None,
) -> None:
    """Relay client frames to the server, refusing requests sent before ``initialize``.

    A 2026-07-28 client opens with ``server/discover``; answering it "method not
    found" makes it fall back to the handshake, the only era in which Claude Code
    registers channels. ``on_refused`` is told each refused method.
    """
    initialized = False
    async with downstream:
        async for item in upstream:
            if (
                not initialized
                and isinstance(item, SessionMessage)
                and isinstance(item.message, JSONRPCRequest)
            ):
                if item.message.method == "initialize":
                    initialized = True
                else:
                    error = JSONRPCError(
                        jsonrpc="2.0",
                        id=item.message.id,
                        error=types.ErrorData(
                            code=types.METHOD_NOT_FOUND,
                            message=f"Method not found: {item.message.method} (this server speaks the "
                            "initialize handshake, protocol versions up to 2025-11-25)",
                        ),
                    )
                    await replies.send(SessionMessage(error))
                    on_refused(item.message.method)
                    continue
            await downstream.send(item)


async def run_channel(
    deps: ChannelDeps, stdin: AsyncIterable[str], on_refused: Callable[[str], None]
) -> None:
    """Serve the channel over ``stdin`` and ``deps.frames`` (the protocol stdio) until stdin closes.

    Requests sent before ``initialize`` are refused by :func:`handshake_only`.
    """
    server = build_server(deps)
    options = server.create_initialization_options(
        experimental_capabilities=capabilities(deps.permission_relay)
    )
    # The SDK only iterates stdin and awaits stdout.write/flush; it types them as AsyncFile.
    async with stdio_server(cast(Any, stdin), cast(Any, deps.frames)) as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        async with anyio.create_task_group() as tg:
            tg.start_soon(handshake_only, read, send, write, on_refused)
            await server.run(receive, write, options)
            tg.cancel_scope.cancel()
