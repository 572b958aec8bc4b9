"""serve's side of NATS: register the session, consume its subject, send receipts back.

Everything here runs beside the local tiers and never holds them up: serve
starts and serves locally while NATS is down; this component connects when
it can, and a lost connection only pauses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mcp_cascade.config import Config
from mcp_cascade.events import Event, EventName, Observer
from mcp_cascade.queue import Item
from mcp_cascade.receive.delivery import Engine, Received
from mcp_cascade.remote.conn import Link, host_name, node_id
from mcp_cascade.remote.consume import consume
from mcp_cascade.remote.jetstream import RECEIPT_HEADER, JetStreamQueue, ensure_stream
from mcp_cascade.remote.registry import HEARTBEAT_S, Registration, bucket, now
from mcp_cascade.response import now_rfc3339
from mcp_cascade.signing import Signer
from mcp_cascade.wire import Tier

__all__ = ["RemoteSession"]

REMOTE_TIER = Tier.NATS
_RETRY_S = 1.0


class RemoteSession:
    """One serve's presence on NATS; ``async with remote.running()`` beside the other components."""

    def __init__(
        self,
        config: Config,
        home: Path,
        session: str,
        cwd: Path,
        engine: Engine,
        signer: Signer,
        observer: Observer,
    ) -> None:
        self.config = config
        self.session = session
        self.engine = engine
        self.signer = signer
        self._observer = observer
        self.started_at = now_rfc3339()
        self.host = host_name()
        self.node = node_id(home)
        self.cwd = cwd
        self.link = Link(config, observer, f"mcp-cascade serve {session}", self._setup)
        self._kv: KeyValue | None = None
        self.consuming = False

    def registration(self, state: str) -> Registration:
        """This session's entry, as of now."""
        return Registration(
            self.session,
            self.host,
            self.node,
            os.getpid(),
            str(self.cwd),
            self.cwd.name,
            self.started_at,
            now(),
            state,
        )

    async def _setup(self, js: JetStreamContext) -> None:
        await ensure_stream(js, self.config)
        self._kv = await bucket(js, self.config)
        await self._kv.put(self.session, self.registration("running").to_json())

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RemoteSession]:
        """Connect (retrying), register, heartbeat and consume until exit; mark the entry stopped."""
        async with self.link.running(), anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat)
            tg.start_soon(self._consume)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
                if self._kv is not None and self.link.connected:
                    with anyio.move_on_after(1, shield=True):
                        try:
                            await self._kv.put(self.session, self.registration("stopped").to_json())
                        except (OSError, nats.errors.Error) as exc:
                            self._emit("nats_down", level="warning", reason=f"cannot mark stopped: {exc!r}")

    async def _heartbeat(self) -> None:
        await self.link.ready.wait()
        while True:
            await anyio.sleep(HEARTBEAT_S)
            if self._kv is None:
                continue
            try:
                await self._kv.put(self.session, self.registration("running").to_json())
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                self._emit("nats_heartbeat", level="debug", reason=repr(exc))

    async def _consume(self) -> None:
        await self.link.ready.wait()
        assert self.link.js is not None
        tolerance_s = self.config.retention_days * 86400
        while True:
            queue = JetStreamQueue(self.link.js, self.session, self.signer, tolerance_s=tolerance_s)
            try:
                self.consuming = True
                await consume(
                    queue,
                    self.engine,
                    self._observer,
                    tier=REMOTE_TIER,
                    on_outcome=self._receipt,
                    progress=queue.progress,
                )
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                self.consuming = False
                self._emit("nats_consume", level="warning", reason=f"{exc!r}; resuming in {_RETRY_S:g} s")
                await anyio.sleep(_RETRY_S)

    async def _receipt(self, item: Item, outcome: Received) -> None:
        msg = item.token
        assert isinstance(msg, Msg)
        to = (msg.headers or {}).get(RECEIPT_HEADER)
        if not to or self.link.nc is None:
            return
        status = "delivered" if outcome.status in ("delivered", "duplicate") else "queued"
        body = json.dumps(
            {
                "id": outcome.response_id,
                "correlation_id": outcome.correlation_id,
                "session": self.session,
                "host": self.host,
                "status": status,
                "tier": REMOTE_TIER,
                "latency_ms": round(outcome.latency_ms, 3),
            }
        ).encode()
        try:
            await self.link.nc.publish(to, body, headers=self.signer.headers(outcome.response_id, body))
        except (
            OSError,
            nats.errors.Error,
        ) as exc:  # a receipt is information: the sender already has 'queued'
            self._emit("receipt_lost", level="debug", reason=repr(exc))

    def health(self) -> dict[str, Any]:
        """The NATS tier's part of /health."""
        up = self.link.connected and self.consuming
        return {
            "status": "ok" if up else "down",
            "url": self.link.url,
            "connected": self.link.connected,
            "host": self.host,
            "last_error": self.link.last_error,
        }

    def _emit(self, name: EventName, **kw: Any) -> None:
        self._observer.emit(Event(name, session=self.session, tier=REMOTE_TIER, **kw))
