"""The bridge's local HTTP API (thin): outbound calls from sessions, health and metrics.

``POST /api/ask``, ``/api/reply`` and ``/api/permission`` carry Standard
Webhooks signatures made with the home's secret (what
:class:`mcp_cascade.receive.outbound.BridgeClient` sends); anything unsigned, forged,
stale or replayed (an id seen within the tolerance) is a 401 and sends nothing.
Answers to verified requests are signed under the request's id, and
``POST /api/hello`` echoes a session's challenge that way, so a session can tell
this bridge from whatever else might listen on its port. Bodies are checked field by field (422 naming the
field). ``GET /health``, ``/health/bridge`` and ``/metrics`` are open, like the
session sidecar's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_cascade.bridge.files import FileRefused
from mcp_cascade.bridge.prompts import ChatNotAllowed, NoRecipient, Prompts
from mcp_cascade.bridge.telegram import TelegramUnavailable
from mcp_cascade.errors import InvalidResponse, SignatureError
from mcp_cascade.events import Event, Observer
from mcp_cascade.redact import scrub_json
from mcp_cascade.signing import Replays, Signer, sign_answer
from mcp_cascade.validation import MAX_BODY_BYTES, parse_body

Session = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    session: Session


class AskBody(_Body):
    """POST /api/ask."""

    question: Annotated[str, StringConstraints(min_length=1, max_length=32768)]
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=10
    )


class HelloBody(BaseModel):
    """POST /api/hello: a session's challenge, echoed in a signed answer."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,64}$")]


class ReplyBody(_Body):
    """POST /api/reply."""

    chat_id: int
    text: Annotated[str, StringConstraints(min_length=1, max_length=32768)]
    files: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=10
    )


class PermissionBody(_Body):
    """POST /api/permission (Claude Code's permission_request, plus the session)."""

    request_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
    tool_name: Annotated[str, StringConstraints(max_length=256)] = ""
    description: Annotated[str, StringConstraints(max_length=32768)] = ""
    input_preview: Annotated[str, StringConstraints(max_length=32768)] = ""


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """What the API needs from the bridge around it."""

    outbound: Prompts
    signer: Signer
    observer: Observer
    health: Callable[[str | None], Mapping[str, Any]]
    metrics: Callable[[], bytes] | None


class _Refused(Exception):
    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


async def _signed_body(request: Request, signer: Signer, replays: Replays) -> tuple[str, bytes]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise _Refused(415, "content-type must be application/json")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _Refused(413, f"body is over the {MAX_BODY_BYTES} byte limit")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _Refused(413, f"body is over the {MAX_BODY_BYTES} byte limit")
    except ClientDisconnect as exc:
        raise _Refused(400, "client disconnected before the body was complete") from exc
    try:
        msg_id = signer.verify(request.headers, body)
        replays.first_use(msg_id)
    except SignatureError as exc:
        raise _Refused(401, str(exc)) from exc
    return msg_id, body


def _model(kind: type[BaseModel], body: bytes) -> Any:
    try:
        data = parse_body(body)
    except InvalidResponse as exc:
        raise _Refused(400, str(exc)) from exc
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"path": "$." + ".".join(str(p) for p in e["loc"]) if e["loc"] else "$", "message": e["msg"]}
            for e in exc.errors()
        ]
        raise _Refused(422, "; ".join(f"{e['path']}: {e['message']}" for e in errors), errors) from exc


async def _hello(body: HelloBody) -> Mapping[str, Any]:
    return {"nonce": body.nonce, "pid": os.getpid()}


def build_app(deps: ApiDeps) -> Starlette:
    """The Starlette app of the bridge's HTTP server."""

    replays = Replays()

    def signed(payload: Mapping[str, Any], status: int, answers: str | None) -> Response:
        # An answer to a verified request is signed under its id, so serve can tell it is ours.
        body = json.dumps(scrub_json(dict(payload)), separators=(",", ":")).encode()
        headers = sign_answer(deps.signer, answers, body) if answers else {}
        return Response(body, status, headers=headers, media_type="application/json")

    def endpoint(
        path: str, kind: type[BaseModel], act: Callable[[Any], Awaitable[Mapping[str, Any]]]
    ) -> Route:
        async def handle(request: Request) -> Response:
            answers: str | None = None
            try:
                answers, raw = await _signed_body(request, deps.signer, replays)
                body = _model(kind, raw)
                try:
                    result = await act(body)
                except NoRecipient as exc:
                    raise _Refused(409, str(exc)) from exc
                except ChatNotAllowed as exc:
                    raise _Refused(403, str(exc)) from exc
                except FileRefused as exc:
                    raise _Refused(422, str(exc), [{"path": "$.files", "message": str(exc)}]) from exc
                except TelegramUnavailable as exc:
                    raise _Refused(502, f"Telegram: {exc}") from exc
            except _Refused as exc:
                deps.observer.emit(
                    Event(
                        "api_refused",
                        level="warning",
                        reason=exc.message,
                        fields={"path": path, "status": exc.status},
                    )
                )
                answer: dict[str, Any] = {"error": exc.message}
                if exc.errors:
                    answer["errors"] = exc.errors
                return signed(answer, exc.status, answers)
            return signed(result, 200, answers)

        return Route(path, handle, methods=["POST"])

    out = deps.outbound

    async def health(request: Request) -> Response:
        part = request.path_params.get("part")
        if part not in (None, "bridge"):
            return JSONResponse({"error": f"no health part {part!r}; try /health/bridge"}, status_code=404)
        body = scrub_json(dict(deps.health(part)))
        return JSONResponse(body, status_code=503 if body.get("status") == "down" else 200)

    async def metrics(request: Request) -> Response:
        if deps.metrics is None:
            return Response("metrics are disabled (metrics = false)\n", status_code=404)
        return Response(deps.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(
        routes=[
            endpoint("/api/hello", HelloBody, _hello),
            endpoint("/api/ask", AskBody, lambda b: out.ask(b.session, b.question, b.options)),
            endpoint("/api/reply", ReplyBody, lambda b: out.reply(b.session, b.chat_id, b.text, b.files)),
            endpoint(
                "/api/permission",
                PermissionBody,
                lambda b: out.permission(
                    b.session, b.request_id, b.tool_name, b.description, b.input_preview
                ),
            ),
            Route("/health", health, methods=["GET"]),
            Route("/health/{part}", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
