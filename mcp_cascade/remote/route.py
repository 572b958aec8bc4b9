"""The sender's side of NATS: where a session lives, publishing to it, and the receipts that come back.

A session is *remote* when the registry says another node serves it. When
the registry cannot be read (NATS down), the last entry seen decides; a
session never seen anywhere and with no folder under this home is treated as
remote too, so its response waits in the sender's outbox for NATS rather than
in an inbox on the wrong host.

An entry of another node read in the last few seconds (by a lookup, or by the
list refreshed every 2 s) answers without asking the registry again: a busy
sender would otherwise pay one registry round trip per response. Such an
answer can only be *remote*, and a stale *remote* still arrives: the subject
is the session's, not its host's, so whichever host serves the session next
consumes it. Anything else (unknown here, or this node's own) is looked up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mcp_cascade.config import Config
from mcp_cascade.errors import SignatureError
from mcp_cascade.events import Event, Observer
from mcp_cascade.remote.conn import Link, node_id
from mcp_cascade.remote.jetstream import JetStreamQueue, ensure_stream
from mcp_cascade.remote.registry import Registration, bucket, everyone, lookup, now
from mcp_cascade.sessions import SessionInfo, SessionPaths
from mcp_cascade.signing import Signer

__all__ = ["RemoteRoute"]

Place = Literal["local", "remote"]
_LOOKUP_S = 1.0
_LIST_EVERY_S = 2.0
_FRESH_S = 2.5 * _LIST_EVERY_S  # a remote entry read this recently is trusted without a lookup


class RemoteRoute:
    """One sender's NATS connection, registry view and receipt inbox."""

    def __init__(self, config: Config, home: Path, signer: Signer, observer: Observer, name: str) -> None:
        self.config = config
        self.home = home
        self.node = node_id(home)
        self.signer = signer
        self._observer = observer
        self.link = Link(config, observer, name, self._setup)
        self._kv: KeyValue | None = None
        self._known: dict[str, Registration] = {}
        self._read_at: dict[str, float] = {}  # when each entry of _known was last read (event-loop clock)
        self._waiting: dict[str, tuple[anyio.Event, list[str]]] = {}
        self.receipt_to = ""

    async def _setup(self, js: JetStreamContext) -> None:
        await ensure_stream(js, self.config)
        self._kv = await bucket(js, self.config)
        assert self.link.nc is not None
        self.receipt_to = self.link.nc.new_inbox().replace("_INBOX.", "cascade.receipt.", 1)
        await self.link.nc.subscribe(self.receipt_to, cb=self._on_receipt)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RemoteRoute]:
        """Connect in the background and keep the list of sessions fresh, until exit."""
        async with self.link.running(), anyio.create_task_group() as tg:
            tg.start_soon(self._refresh)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _refresh(self) -> None:
        await self.link.ready.wait()
        while True:
            if self._kv is not None and self.link.connected:
                try:
                    with anyio.fail_after(2):
                        self._remember(*await everyone(self._kv))
                except (OSError, TimeoutError, nats.errors.Error):
                    pass  # the last list stays; lookups say so
            await anyio.sleep(_LIST_EVERY_S)

    def _remember(self, *entries: Registration) -> None:
        read = anyio.current_time()
        for entry in entries:
            self._known[entry.session_id] = entry
            self._read_at[entry.session_id] = read

    def sessions(self) -> list[SessionInfo]:
        """Sessions other nodes serve right now (from the last registry read)."""
        t = now()
        return [r.info() for r in self._known.values() if r.node != self.node and r.running(t)]

    def registrations(self) -> list[Registration]:
        """Every entry of the last registry read (this node's too, stopped ones too)."""
        return sorted(self._known.values(), key=lambda r: r.session_id)

    async def place(self, session: str) -> tuple[Place, str]:
        """Whether ``session`` is reached through NATS, and why."""
        cached = self._known.get(session)
        if (
            cached is not None
            and cached.node != self.node
            and self.link.connected
            and anyio.current_time() - self._read_at.get(session, -_FRESH_S) < _FRESH_S
        ):
            return "remote", f"served on {cached.host} ({cached.state})"
        found: Registration | None = None
        read = False
        if self._kv is not None and self.link.connected:
            try:
                with anyio.fail_after(_LOOKUP_S):
                    found = await lookup(self._kv, session)
                read = True
            except (OSError, TimeoutError, nats.errors.Error):
                pass
        if read and found is None:
            self._known.pop(session, None)
            self._read_at.pop(session, None)
            return "local", "not in the NATS registry"
        if found is not None:
            self._remember(found)
        else:  # the registry could not be read: the last entry seen decides
            found = self._known.get(session)
            if found is None:
                if SessionPaths(self.home, session).dir.is_dir():
                    return "local", "NATS registry unreadable; the session has a folder here"
                return "remote", "NATS registry unreadable and the session is unknown here"
        if found.node == self.node:
            return "local", "registered by this node"
        return "remote", f"served on {found.host} ({found.state})"

    def queue(self, session: str) -> JetStreamQueue:
        """The session's JetStream queue, producer side; raises ConnectionError while NATS is down."""
        js = self.link.js
        if js is None or not self.link.connected:
            raise ConnectionError(f"not connected to NATS ({self.link.last_error or self.link.url})")
        return JetStreamQueue(js, session, self.signer, receipt_to=self.receipt_to or None)

    def expect(self, response_id: str) -> None:
        """Be ready for ``response_id``'s receipt (call before publishing)."""
        self._waiting[response_id] = (anyio.Event(), [])

    async def receipt(self, response_id: str, timeout: float) -> str | None:
        """The status the session reported for ``response_id``, if it did within ``timeout`` seconds."""
        event, found = self._waiting.get(response_id, (anyio.Event(), []))
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
            return found[0] if found else None
        finally:
            self._waiting.pop(response_id, None)

    async def _on_receipt(self, msg: Msg) -> None:
        try:
            rid = self.signer.verify(msg.headers or {}, msg.data)
            body = json.loads(msg.data)
            status = str(body["status"])
        except (SignatureError, ValueError, KeyError, TypeError) as exc:
            self._observer.emit(Event("receipt_rejected", tier=4, level="warning", reason=repr(exc)))
            return
        waiting = self._waiting.get(rid)
        if waiting is not None:
            waiting[1].append(status)
            waiting[0].set()
            return
        # Late (the sender had already answered 'queued'): the audit trail still gets the session's word.
        self._observer.emit(
            Event(
                "remote_receipt",
                tier=4,
                response_id=rid,
                correlation_id=body.get("correlation_id"),
                session=body.get("session"),
                latency_ms=body.get("latency_ms"),
                fields={"status": status, "host": body.get("host")},
            )
        )
