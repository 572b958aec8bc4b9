"""The registry as ``inspect status`` shows it: one quick connection, every host's sessions."""

from __future__ import annotations

from pathlib import Path

import anyio
import nats.errors

from mcp_cascade.config import Config
from mcp_cascade.events import NullObserver
from mcp_cascade.remote.conn import Link, node_id
from mcp_cascade.remote.registry import Registration, bucket, everyone

__all__ = ["read_registry"]


async def read_registry(config: Config, home: Path, timeout: float = 3.0) -> tuple[list[Registration], str]:
    """Every other node's entries, and an error text when NATS could not be read in ``timeout`` seconds."""
    link = Link(config, NullObserver(), "mcp-cascade inspect")
    mine = node_id(home)
    async with link.running():
        with anyio.move_on_after(timeout):
            await link.ready.wait()
        if link.js is None or not link.connected:
            return [], f"NATS unreachable: {link.last_error or 'no answer in time'}"
        try:
            with anyio.fail_after(timeout):
                found = await everyone(await bucket(link.js, config))
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            return [], f"registry unreadable: {exc!r}"
    return [r for r in found if r.node != mine], ""


def describe(entry: Registration, now: float) -> str:
    """Where the session runs and when it was last heard from."""
    if entry.state != "running":
        return f"on {entry.host}, stopped; answers wait in the JetStream stream"
    silent = now - entry.last_seen
    if entry.running(now):
        return f"on {entry.host}, pid {entry.pid}, heard from {silent:.0f}s ago"
    return f"on {entry.host}, pid {entry.pid}, silent for {silent:.0f}s (stopped without saying so?)"
