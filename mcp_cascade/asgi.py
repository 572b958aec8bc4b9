"""uvicorn on a socket we bound ourselves: the sidecar, the bridge's API and the fake Bot API.

Binding first makes a taken port our clear error (naming the setting) rather
than uvicorn's ``sys.exit``, and lets the caller learn the port before
anything listens. uvicorn must not install signal handlers: the process that
embeds it owns SIGTERM and SIGINT.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import uvicorn
from starlette.types import ASGIApp

from mcp_cascade.errors import ConfigError

__all__ = ["bind_socket", "serve_asgi"]


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
async def serve_asgi(app: ASGIApp, sock: socket.socket, *, ready_s: float = 10.0) -> AsyncIterator[None]:
    """Serve ``app`` on ``sock`` until the block exits; the block starts once uvicorn listens.

    On exit the server stops at once, without uvicorn's graceful wait: every
    caller here answers only what is already durable, and a request cut short
    was not acknowledged (its client falls back or retries).
    """
    server = _Uvicorn(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    )
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
