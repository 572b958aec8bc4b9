"""uvicorn on a socket we bound ourselves: the sidecar, the bridge's API and the fake Bot API.

Binding first makes a taken port our clear error (naming the setting) rather
than uvicorn's ``sys.exit``, and lets the caller learn the port before
anything listens. uvicorn must not install signal handlers: the process that
embeds it owns SIGTERM and SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from mcp_cascade.errors import ConfigError

if TYPE_CHECKING:
    from mcp_cascade.config import Config

__all__ = ["AcceptExhausted", "HttpLimits", "bind_socket", "serve_asgi"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one client may hold of a server: head size, read deadlines, connections."""

    header_bytes: int = 16_384
    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    max_connections: int = 64
    keep_alive_s: float = 5.0

    @classmethod
    def of(cls, config: Config) -> HttpLimits:
        """The limits a configuration sets."""
        return cls(
            header_bytes=config.http_header_bytes,
            header_timeout_s=config.http_header_timeout_ms / 1000,
            body_timeout_s=config.http_body_timeout_ms / 1000,
            max_connections=config.http_max_connections,
            keep_alive_s=config.http_keep_alive_ms / 1000,
        )


def _protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with read deadlines and a connection cap, which uvicorn lacks.

    A request's head must arrive within ``header_timeout_s`` of the connection (or of the
    previous response), its body within ``body_timeout_s`` after the head; a connection
    beyond ``max_connections`` is closed at once. A client trickling bytes thus holds a
    descriptor for seconds, never forever.
    """

    class Deadlined(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase: object = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if len(self.connections) > limits.max_connections:
                self.transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            phase = self.conn.their_state
            if phase == self._phase:
                return
            self._phase = phase
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            if phase is h11.IDLE:
                self._deadline = self.loop.call_later(limits.header_timeout_s, self._expired)
            elif phase is h11.SEND_BODY:
                self._deadline = self.loop.call_later(limits.body_timeout_s, self._expired)

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return Deadlined


_ACCEPT_EXHAUSTED = "socket.accept() out of system resource"
_log = logging.getLogger(__name__)
AcceptHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class AcceptExhausted:
    """The loop's exception handler, with accept() failing for lack of descriptors said once in a while.

    asyncio reports every accept() that fails with EMFILE (or ENFILE, ENOBUFS, ENOMEM) with its
    traceback, and goes on through the rest of its batch: thousands of tracebacks a second while a
    flood holds every descriptor. Here it is one line every ``every_s``, with how many it stands for;
    everything else goes to the previous handler. Meanwhile asyncio pauses accepting for a second
    and new connections wait in the kernel's queue.
    """

    def __init__(
        self,
        previous: AcceptHandler | None,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.previous = previous
        self.every_s = every_s
        self.clock = clock
        self.suppressed = 0
        self._last = -float("inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Say it (rate-limited), or pass ``context`` on."""
        if context.get("message") != _ACCEPT_EXHAUSTED:
            if self.previous is None:
                loop.default_exception_handler(context)
            else:
                self.previous(loop, context)
            return
        now = self.clock()
        if now - self._last < self.every_s:
            self.suppressed += 1
            return
        exc = context.get("exception")
        _log.warning(
            "accept() failed: %s; new connections wait in the kernel's queue (%d more failures since)",
            exc.strerror if isinstance(exc, OSError) else exc,
            self.suppressed,
        )
        self._last, self.suppressed = now, 0


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int, key: str = "sidecar_port") -> socket.socket:
    """Bind here, so a taken port is our clear error (naming ``key``), not uvicorn's sys.exit."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without it, Nagle holds the response body behind the headers.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(key, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp, sock: socket.socket, *, ready_s: float = 10.0, limits: HttpLimits | None = None
) -> AsyncIterator[None]:
    """Serve ``app`` on ``sock`` until the block exits; the block starts once uvicorn listens.

    On exit the server stops at once, without uvicorn's graceful wait: every
    caller here answers only what is already durable, and a request cut short
    was not acknowledged (its client falls back or retries).
    """
    limits = limits or HttpLimits()
    server = _Uvicorn(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            http=_protocol(limits),
            h11_max_incomplete_event_size=limits.header_bytes,
            # asyncio accepts up to ``backlog`` connections per wake-up before any of them is seen by
            # the protocol's cap: with uvicorn's 2048, a burst took every descriptor (EMFILE) first.
            backlog=limits.max_connections,
            timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        )
    )
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    if not isinstance(previous, AcceptExhausted):
        loop.set_exception_handler(AcceptExhausted(previous))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(ready_s):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await anyio.sleep(0.005)
        try:
            yield
        finally:
            server.should_exit = True
            tg.cancel_scope.cancel()
            if not isinstance(previous, AcceptExhausted):
                loop.set_exception_handler(previous)
