"""One NATS connection per process, opened from the configuration, retried until it exists.

nats-py reconnects an established connection by itself; the first connection
it does not retry, so :class:`Link` does: a process with ``nats_url`` set
starts and works locally while NATS is down and connects when it comes back.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from mcp_cascade.config import Config
from mcp_cascade.events import Event, Observer

__all__ = ["Link", "host_name", "node_id"]

_FIRST_WAIT_S = 0.25
_MAX_WAIT_S = 5.0


def host_name() -> str:
    """This machine's name, as sessions lists show it."""
    return socket.gethostname()


def node_id(home: Path) -> str:
    """Who "here" is: one home on one host (two homes on one machine are two places)."""
    return hashlib.sha256(f"{host_name()}\0{home.resolve()}".encode()).hexdigest()[:16]


def connect_options(config: Config) -> dict[str, Any]:
    """nats-py's connect arguments for ``nats_url``, ``nats_creds`` and ``nats_tls_ca``."""
    assert config.nats_url is not None
    servers = [url.strip() for url in config.nats_url.split(",")]
    options: dict[str, Any] = {
        "servers": servers,
        "connect_timeout": 2,
        "reconnect_time_wait": 0.5,
        "max_reconnect_attempts": -1,
        "ping_interval": 5,
        "max_outstanding_pings": 2,
    }
    if config.nats_creds is not None:
        options["user_credentials"] = str(config.nats_creds.expanduser())
    if config.nats_tls_ca is not None:
        options["tls"] = ssl.create_default_context(cafile=str(config.nats_tls_ca.expanduser()))
    elif any(url.startswith("tls://") for url in servers):
        options["tls"] = ssl.create_default_context()
    return options


class Link:
    """The process's NATS connection: :attr:`js` once connected, None until then.

    ``on_connect`` runs after every first connection and every reconnection
    (stream and consumer set-up is idempotent), in the link's task.
    """

    def __init__(
        self,
        config: Config,
        observer: Observer,
        name: str,
        on_connect: Callable[[JetStreamContext], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.url = config.nats_url or ""
        self._observer = observer
        self._name = name
        self._on_connect = on_connect
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.last_error: str | None = None
        self.ready = anyio.Event()
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the connection is up right now."""
        return self.nc is not None and self.nc.is_connected and self.ready.is_set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Link]:
        """Connect in the background (retrying forever) until exit; close on the way out."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
                self._closing = True
                if self.nc is not None and not self.nc.is_closed:
                    with anyio.move_on_after(2, shield=True):
                        await self.nc.close()

    async def _keep(self) -> None:
        wait = _FIRST_WAIT_S
        while True:
            try:
                nc = await nats.connect(
                    name=self._name,
                    error_cb=self._error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    **connect_options(self.config),
                )
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                self._trouble(f"cannot connect to {self.url}: {exc!r}; retrying")
                await anyio.sleep(wait)
                wait = min(wait * 2, _MAX_WAIT_S)
                continue
            self.nc, self.js = nc, nc.jetstream(timeout=2.0)
            break
        await self._setup()
        await anyio.sleep_forever()

    async def _setup(self) -> None:
        """Run ``on_connect`` until it succeeds (JetStream may still be electing a leader)."""
        wait = _FIRST_WAIT_S
        while self.js is not None:
            try:
                if self._on_connect is not None:
                    await self._on_connect(self.js)
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                self._trouble(f"JetStream set-up failed: {exc!r}; retrying")
                await anyio.sleep(wait)
                wait = min(wait * 2, _MAX_WAIT_S)
                continue
            self.last_error = None
            self.ready.set()
            self._observer.emit(Event("nats_connected", fields={"url": self.url}))
            return

    def _trouble(self, reason: str) -> None:
        first = self.last_error is None
        self.last_error = reason
        self._observer.emit(Event("nats_down", level="warning" if first else "debug", reason=reason))

    async def _error(self, exc: Exception) -> None:
        # nats-py retries the first connection itself (max_reconnect_attempts -1), reporting each miss here.
        self._trouble(f"{self.url}: {exc!r}")

    async def _disconnected(self) -> None:
        if self._closing:
            return
        self._observer.emit(
            Event("nats_disconnected", level="warning", reason="connection lost; reconnecting")
        )

    async def _reconnected(self) -> None:
        self.last_error = None
        self._observer.emit(Event("nats_reconnected", fields={"url": self.url}))
