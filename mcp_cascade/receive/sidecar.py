"""The session's HTTP sidecar: the tier-1 webhook, health and metrics (thin).

Every request that is not a good, signed response gets a 4xx with a message
naming what is wrong; only a failure to persist is a 503, which tells the
sender to fall back to another tier.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_cascade.errors import FieldError, InvalidResponse, Poisoned, SignatureError, StoreUnavailable
from mcp_cascade.events import Event, Observer
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.openapi import spec
from mcp_cascade.redact import scrub_json
from mcp_cascade.response import from_dict, from_legacy, is_legacy_webhook
from mcp_cascade.signing import Signer, signed_tier
from mcp_cascade.validation import CORRELATION_RE, ID_RE, MAX_BODY_BYTES, parse_body
from mcp_cascade.wire import CORRELATION_HEADER, WEBHOOK_PATH, Tier

__all__ = ["SidecarDeps", "build_app"]


@dataclass(frozen=True, slots=True)
class SidecarDeps:
    """What the sidecar needs from the server around it."""

    engine: Engine
    signer: Signer
    session: str
    observer: Observer
    health: Callable[[str | None], Mapping[str, Any]]
    metrics: Callable[[], bytes] | None
    # legacy_webhook_unsigned, read per request (a config reload turns it off without a restart).
    legacy_unsigned: Callable[[], bool] = bool
    # Listening beyond loopback: health says how things are, never where (no paths, pids or URLs).
    public: bool = False


class _Rejected(Exception):
    def __init__(self, status: int, message: str, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        # Only a request whose signature verified speaks for a response: others stay out of its trail.
        self.authenticated = False


class _Sample:
    """Rate-limits the log lines of unauthenticated rejections: one warning per window, the rest at debug.

    Every rejection is still counted (``responses_total{outcome="rejected"}``); only the log is sampled,
    so a flood of forged requests cannot fill stderr or rotate the audit trail away.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._next = 0.0
        self.suppressed = 0

    def level(self) -> str:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.window_s
            return "warning"
        self.suppressed += 1
        return "debug"


async def _read_capped(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise _Rejected(400, "content-length is not a number")
        if int(length) > MAX_BODY_BYTES:
            raise _Rejected(413, f"body is {length} bytes; the limit is {MAX_BODY_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Rejected(413, f"body is over the {MAX_BODY_BYTES} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(deps: SidecarDeps) -> Starlette:
    """The Starlette app of one session's sidecar."""

    def observe(
        route: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def timed(request: Request) -> Response:
            start = time.perf_counter()
            response = await handler(request)
            deps.observer.emit(
                Event(
                    "http_request",
                    latency_ms=(time.perf_counter() - start) * 1000,
                    level="debug",
                    fields={"method": request.method, "route": route, "status": response.status_code},
                )
            )
            return response

        return timed

    sample = _Sample()

    async def webhook(request: Request) -> Response:
        header_cid = request.headers.get(CORRELATION_HEADER)
        # The tier only labels metrics and meta; a claim the signature does not cover is ignored.
        tier = Tier.BRIDGE if signed_tier(deps.signer, request.headers) == 2 else Tier.WEBHOOK
        try:
            response = await _parse(request, deps, header_cid)
            try:
                outcome = await deps.engine.receive(response, tier)
            except Poisoned as exc:  # quarantined, not acknowledged: no tier could carry it either
                rejected = _Rejected(422, str(exc), (FieldError("$", str(exc)),))
                rejected.authenticated = True
                raise rejected from exc
        except _Rejected as exc:
            fields: dict[str, Any] = {"status": exc.status}
            if not exc.authenticated:
                fields.update(unauthenticated=True, suppressed=sample.suppressed)
            deps.observer.emit(
                Event(
                    "rejected",
                    tier=tier,
                    session=deps.session,
                    correlation_id=header_cid if exc.authenticated else None,
                    level="warning" if exc.authenticated else sample.level(),
                    reason=exc.message,
                    response_id=request.headers.get("webhook-id") if exc.authenticated else None,
                    fields=fields,
                )
            )
            body: dict[str, Any] = {"status": "rejected", "error": exc.message}
            if exc.errors:
                body["errors"] = [{"path": e.path, "message": e.message} for e in exc.errors]
            return JSONResponse(scrub_json(body), status_code=exc.status)
        except StoreUnavailable as exc:
            return JSONResponse({"status": "unavailable", "error": f"cannot persist: {exc}"}, status_code=503)
        code = 202 if outcome.status == "queued" else 200
        return JSONResponse(
            {
                "status": outcome.status,
                "id": outcome.response_id,
                "correlation_id": outcome.correlation_id,
                "tier": outcome.tier,
                "latency_ms": round(outcome.latency_ms, 3),
                **({"first_tier": outcome.first_tier} if outcome.first_tier is not None else {}),
            },
            status_code=code,
            headers={CORRELATION_HEADER: outcome.correlation_id},
        )

    async def health(request: Request) -> Response:
        tier = request.path_params.get("tier")
        if tier not in (None, "webhook", "file"):
            return JSONResponse({"error": f"no tier {tier!r}; try webhook or file"}, status_code=404)
        body = scrub_json(dict(await anyio.to_thread.run_sync(deps.health, tier)))
        if deps.public:
            body = _public_health(body)
        return JSONResponse(body, status_code=503 if body.get("status") == "down" else 200)

    async def metrics(request: Request) -> Response:
        if deps.metrics is None:
            return Response("metrics are disabled (metrics = false)\n", status_code=404)
        # Rendering and the gauges' store read take a fraction of a millisecond: off the event loop.
        text = await anyio.to_thread.run_sync(deps.metrics)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec(WEBHOOK_PATH))

    return Starlette(
        routes=[
            Route("/openapi.json", openapi, methods=["GET"]),
            Route(WEBHOOK_PATH, observe(WEBHOOK_PATH, webhook), methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/health/{tier}", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


def _loopback(request: Request) -> bool:
    """Whether the request comes from this machine (the only place unsigned legacy bodies may come from)."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unsigned_legacy(body: bytes) -> Any:
    """cctelegram's webhook body, which it never signs (legacy_webhook_unsigned on, loopback only)."""
    try:
        data = parse_body(body)
        if not is_legacy_webhook(data):
            raise _Rejected(
                401,
                "webhook-signature missing: only cctelegram's legacy body shape may come unsigned",
            )
        return from_legacy(data, id_source=body)
    except InvalidResponse as exc:
        raise _Rejected(400 if exc.kind == "malformed" else 422, str(exc), exc.errors) from exc


_PUBLIC_KEYS = ("status", "session_id", "queue_depth", "oldest_pending_age_s", "uptime_s")


def _public_health(body: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a health body that is safe for the network: statuses and figures only."""
    public = {k: body[k] for k in _PUBLIC_KEYS if k in body}
    tiers = body.get("tiers")
    if isinstance(tiers, Mapping):
        public["tiers"] = {name: {"status": t.get("status")} for name, t in tiers.items()}
    return public


async def _parse(request: Request, deps: SidecarDeps, header_cid: str | None) -> Any:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise _Rejected(415, f"content-type must be application/json, not {ctype or 'missing'!r}")
    try:
        body = await _read_capped(request)
    except ClientDisconnect as exc:
        raise _Rejected(400, "client disconnected before the body was complete") from exc
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(400, f"body is not UTF-8 ({exc.reason})") from exc
    if header_cid is not None and not CORRELATION_RE.match(header_cid):
        raise _Rejected(400, "x-correlation-id must be a UUID (8-4-4-4-12 hex digits)")
    if "webhook-signature" not in request.headers and deps.legacy_unsigned() and _loopback(request):
        return _unsigned_legacy(body)
    raw_id = request.headers.get("webhook-id")
    if raw_id is not None and not ID_RE.fullmatch(raw_id):  # checked before anything logs it
        raise _Rejected(400, "webhook-id must be 1-128 characters of A-Z a-z 0-9 . _ : - (DESIGN 5)")
    try:
        msg_id = deps.signer.verify(request.headers, body)
    except SignatureError as exc:
        raise _Rejected(401, str(exc)) from exc
    try:
        return _signed(body, msg_id, deps, header_cid)
    except _Rejected as exc:
        exc.authenticated = True
        raise


def _signed(body: bytes, msg_id: str, deps: SidecarDeps, header_cid: str | None) -> Any:
    """The checks of a body whose signature verified."""
    try:
        data = parse_body(body)
        if is_legacy_webhook(data):
            return from_legacy(data, id_source=body)
        response = from_dict(data, correlation_id=header_cid)
    except InvalidResponse as exc:
        raise _Rejected(400 if exc.kind == "malformed" else 422, str(exc), exc.errors) from exc
    if response.id != msg_id:
        raise _Rejected(400, f"webhook-id {msg_id!r} does not equal the body's id {response.id!r}")
    if response.session is not None and response.session != deps.session:
        raise _Rejected(
            422,
            f"addressed to session {response.session!r}, this is {deps.session!r}",
            (FieldError("$.session", "does not match this server's session"),),
        )
    return response
