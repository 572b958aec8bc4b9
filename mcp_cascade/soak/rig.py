"""The pieces of a soak run: one session under test, the streams that feed it, the sender side.

A :class:`Rig` is one real ``serve`` process (driven by :class:`ServeProcess`,
which speaks JSON-RPC on its stdio as Claude Code does) with a fault-injecting
TCP proxy in front of its sidecar: the session's discovery file is rewritten
so every sender reaches the sidecar through the proxy, as a broken network or
a broken sidecar would be met on the way. The MCP client side records what
the session received; nothing of our own is mocked.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import Process, TaskGroup

from mcp_cascade.durable import atomic_write
from mcp_cascade.response import Response, make_response
from mcp_cascade.sessions import SessionPaths, read_session
from mcp_cascade.soak.tally import StreamTally
from mcp_cascade.testing import ServeProcess, point_webhook_at
from mcp_cascade.testing.faults import FaultProxy

DeliverFn = Callable[[Response, str], Awaitable[Mapping[str, Any] | None]]


def write_config(home: Path, values: Mapping[str, Any]) -> None:
    """Write ``config.toml`` atomically (running processes reload it on the rename)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, list | tuple):
            lines.append(f"{key} = {json.dumps(list(value))}")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    atomic_write(home / "config.toml", ("\n".join(lines) + "\n").encode())


class Progress:
    """How many responses the streams of a scenario have finished; waitable."""

    def __init__(self, on_advance: Callable[[], None] = lambda: None) -> None:
        self.done = 0
        self._changed = anyio.Event()
        self._on_advance = on_advance  # the progress bar's tick

    def advance(self) -> None:
        """One more response has its receipt."""
        self.done += 1
        self._on_advance()
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


class SoakAck:
    """Tier 2's acknowledgment to the person; fails on demand, as an unreachable Telegram would."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0
        self.failures = 0

    async def __call__(self, response: Response, session: str, reason: str) -> None:
        """Count the acknowledgment, or raise while failing."""
        self.calls += 1
        if self.failing:
            self.failures += 1
            raise ConnectionError("injected: the acknowledgment cannot reach Telegram")


class Rig:
    """One session under test: serve, the proxy in front of its sidecar, and what its client received."""

    def __init__(self, home: Path, session: str, logs: Path, *, seed: int = 0) -> None:
        self.home = home
        self.session = session
        self.paths = SessionPaths(home, session)
        self.serve = ServeProcess(home, session, stderr_path=logs / f"serve-{session}.log")
        self.proxy = FaultProxy("127.0.0.1", 1, seed=seed)
        self.kills = 0
        self.freezes = 0
        self.frozen = False
        self.direct_url = ""
        self.crashes: list[str] = []  # serve exits nobody asked for, with the end of its stderr
        self._expected_exit = False
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Rig:
        await self.proxy.__aenter__()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self.serve.__aenter__()
        await self._attach()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.thaw()
        self._expected_exit = True
        try:
            await self.serve.__aexit__(None, None, None)
        finally:
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            await self.proxy.__aexit__(None, None, None)

    async def _watch(self, process: Process) -> None:
        """A serve that exits by itself crashed: record it and start it again, as a supervisor would."""
        code = await process.wait()
        if self._expected_exit or process is not self.serve.process:
            return
        self.crashes.append(f"serve exited with {code}: {self.serve.stderr_tail(3)[-600:]}")
        await anyio.sleep(1.0)  # a serve that cannot start (a full disk) is retried, not spun
        if self._expected_exit:
            return
        try:
            await self.serve.start()
            await self._attach()
        except Exception as exc:  # task boundary: it died again, and its own watch restarts it
            self.crashes.append(f"restart failed: {exc!r}"[:600])

    async def _attach(self) -> None:
        """Wait for serve's sidecar, route senders through the proxy, and initialize like Claude Code."""
        assert self._tg is not None and self.serve.process is not None
        self._tg.start_soon(self._watch, self.serve.process)
        info = await self.serve.wait_session(timeout=30)
        url = urlsplit(info.webhook_url)
        assert url.hostname is not None and url.port is not None
        self.proxy.target = (url.hostname, url.port)
        self.direct_url = info.webhook_url
        self.route(through_proxy=True)
        await self.serve.initialize()

    def route(self, *, through_proxy: bool) -> None:
        """Point the session's discovery file at the proxy (the default) or straight at the sidecar."""
        path = urlsplit(self.direct_url).path
        point_webhook_at(self.home, self.session, self.proxy.url(path) if through_proxy else self.direct_url)

    @property
    def pid(self) -> int:
        """serve's current pid."""
        assert self.serve.process is not None
        return self.serve.process.pid

    async def kill_and_restart(self, down_s: float = 0.0) -> None:
        """SIGKILL serve, leave it down ``down_s``, start it again (a crash and Claude Code's restart)."""
        self.thaw()
        self._expected_exit = True
        self.serve.kill(signal.SIGKILL)
        await self.serve.wait_exit()
        self.kills += 1
        await anyio.sleep(down_s)
        await self.serve.start()
        self._expected_exit = False
        await self._attach()

    def freeze(self) -> None:
        """SIGSTOP serve: its sidecar, watcher and MCP side all stop; the kernel still accepts connections."""
        if not self.frozen:
            os.kill(self.pid, signal.SIGSTOP)
            self.frozen = True
            self.freezes += 1

    def thaw(self) -> None:
        """SIGCONT serve."""
        if self.frozen:
            os.kill(self.pid, signal.SIGCONT)
            self.frozen = False

    def inbox_backlog(self) -> int:
        """Files waiting in the inbox (new/ and cur/)."""
        total = 0
        for sub in ("new", "cur"):
            try:
                total += sum(1 for _ in (self.paths.inbox / sub).iterdir())
            except FileNotFoundError:
                continue
        return total

    def alive(self) -> bool:
        """Whether serve's discovery file names a live process."""
        info = read_session(self.home, self.session)
        return info is not None and info.alive


async def stream(
    rig: Rig,
    deliver: DeliverFn,
    tally: StreamTally,
    progress: Progress,
    *,
    scenario: str,
    count: int,
    rate: float,
    start: float,
    overtime: Callable[[], bool] = lambda: False,
) -> None:
    """Send ``count`` responses to ``rig``'s session, one after another's receipt, due at ``rate`` per second.

    A response is due at ``start + i / rate``; when the previous one is late,
    the next goes at once and its latency still counts from when it was due.
    Past ``count`` the stream goes on at the same pace while ``overtime()`` holds
    (a fault's return to tier 1 is still awaited: without traffic it cannot be seen).
    """
    for index in itertools.count():
        if index >= count and not overtime():
            return
        due = start + index / rate
        await anyio.sleep(max(0.0, due - time.perf_counter()))
        response = make_response(
            type="message",
            user_id=4242,
            chat_id=4242,
            text=f"soak {scenario} {rig.session} #{index}",
            id=f"soak:{scenario}:{rig.session}:{index:06d}",
            session=rig.session,
        )
        tally.schedule(response, rig.session, index, due)
        receipt = await deliver(response, rig.session)
        if receipt is not None:
            tally.receipt(response.id, receipt)
        progress.advance()
