"""Helpers of the sending-cascade tests: an observer that can be waited on, session.json rewrites."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from mcp_cascade.config import Config
from mcp_cascade.events import Event
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.testing import ServeProcess


class Recorder:
    """An Observer that keeps every event and wakes waiters on each one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = anyio.Event()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.event == name]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()


def write_session_json(home: Path, session: str, pid: int, url: str) -> None:
    """A discovery file as serve writes it, for a server that is not really there."""
    paths = SessionPaths(home, session)
    paths.dir.mkdir(parents=True, exist_ok=True)
    paths.session_json.write_text(
        json.dumps(
            {
                "protocol": 1,
                "session_id": session,
                "pid": pid,
                "webhook_url": url,
                "health_url": url.rsplit("/webhook", 1)[0] + "/health",
                "started_at": "2026-11-29T10:00:00Z",
                "cwd": "/",
                "label": "test",
            }
        )
    )


def seen(serve: ServeProcess) -> Counter[str]:
    """How many channel notifications the session received per response id."""
    return Counter(n["params"]["meta"]["response_id"] for n in serve.channel())


def meta_tier(serve: ServeProcess, response_id: str) -> str:
    """The tier attribute of the notification that carried ``response_id``."""
    (note,) = [n for n in serve.channel() if n["params"]["meta"]["response_id"] == response_id]
    tier: str = note["params"]["meta"]["tier"]
    return tier


def config(**values: Any) -> Config:
    """A validated configuration: defaults plus ``values``."""
    return Config.model_validate(values)
