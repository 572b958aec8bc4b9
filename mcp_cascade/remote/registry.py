"""Where each session runs: a JetStream key-value bucket every host reads and writes.

Key: the session id. Value: ``{"protocol", "session_id", "host", "node", "pid",
"cwd", "label", "started_at", "last_seen", "state"}``. A running serve rewrites
its entry every few seconds (``last_seen``) and marks it ``stopped`` on exit; the
entry stays, so senders keep routing to that host (the stream holds what
arrives meanwhile). An entry not refreshed for :data:`STALE_S` is a serve that
died without saying so.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mcp_cascade.config import Config
from mcp_cascade.sessions import PROTOCOL, SessionInfo

__all__ = ["BUCKET", "HEARTBEAT_S", "STALE_S", "Registration", "bucket", "parse"]

BUCKET = "cascade-sessions"
HEARTBEAT_S = 5.0
STALE_S = 30.0


@dataclass(frozen=True, slots=True)
class Registration:
    """One session's entry in the bucket."""

    session_id: str
    host: str
    node: str
    pid: int
    cwd: str
    label: str
    started_at: str
    last_seen: float
    state: str

    def to_json(self) -> bytes:
        """The stored value."""
        return json.dumps({"protocol": PROTOCOL, **asdict(self)}).encode()

    def running(self, now: float) -> bool:
        """Serving, and heard from recently."""
        return self.state == "running" and now - self.last_seen <= STALE_S

    def info(self) -> SessionInfo:
        """As the session lists show it (no webhook: it is reached through JetStream)."""
        return SessionInfo(
            self.session_id,
            self.pid,
            "",
            "",
            self.started_at,
            self.cwd,
            self.label,
            host=self.host,
            node=self.node,
        )


def parse(value: bytes | None) -> Registration | None:
    """An entry, or None when it is not one of ours."""
    try:
        data: Any = json.loads(value or b"")
        if not isinstance(data, dict) or data.get("protocol") != PROTOCOL:
            return None
        return Registration(
            str(data["session_id"]),
            str(data["host"]),
            str(data["node"]),
            int(data["pid"]),
            str(data.get("cwd", "")),
            str(data.get("label", "")),
            str(data.get("started_at", "")),
            float(data["last_seen"]),
            str(data.get("state", "running")),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def bucket(js: JetStreamContext, config: Config) -> KeyValue:
    """The sessions bucket, created on first use (history 1, as many copies as the stream)."""
    try:
        return await js.key_value(BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=BUCKET, history=1, replicas=config.nats_replicas)


async def lookup(kv: KeyValue, session: str) -> Registration | None:
    """The session's entry, or None when no host has registered it."""
    try:
        entry = await kv.get(session)
    except nats.js.errors.KeyNotFoundError:
        return None
    return parse(entry.value)


async def everyone(kv: KeyValue) -> list[Registration]:
    """Every entry in the bucket."""
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return []
    found = [await lookup(kv, key) for key in keys]
    return sorted((r for r in found if r is not None), key=lambda r: r.session_id)


def now() -> float:
    """Wall-clock time, as ``last_seen`` is written."""
    return time.time()
