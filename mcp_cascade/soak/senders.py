"""The sending side of a soak run: the Sender in this process, or sender processes that can be killed.

Whatever carries a response, the harness acts as the upstream (Telegram's
update queue): a response without an acknowledging receipt is sent again,
with the same id, until one acknowledges it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup

from mcp_cascade.live_config import LiveConfig
from mcp_cascade.ops.telemetry import AuditTrail, JsonLog, Telemetry
from mcp_cascade.response import Response
from mcp_cascade.send.cascade import Sender
from mcp_cascade.send.outbox import Outbox
from mcp_cascade.soak.rig import SoakAck
from mcp_cascade.testing import ChildProcess, child_env, stdout_lines
from mcp_cascade.wire import TierChoice


def _child_env() -> dict[str, str]:
    return child_env(clean=True)


class InProcessSender:
    """A :class:`Sender` in the harness's own process, reloading the home's config.toml live."""

    def __init__(self, home: Path, logs: Path, ack: SoakAck, *, tier: TierChoice = "auto") -> None:
        self.home = home
        self.tier: TierChoice = tier
        self.live = LiveConfig(home, {}, {})
        self._log = (logs / "sender.log").open("a", encoding="utf-8")
        self.telemetry = Telemetry(
            log=JsonLog(self._log, "info", component="soak-sender"),
            audit=AuditTrail(home / "audit.jsonl", self.live.current.audit_max_bytes, "send"),
            metrics=None,
        )
        self.sender = Sender(home, self.live, self.telemetry, ack=ack)

    async def __aenter__(self) -> InProcessSender:
        await self.sender.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.sender.__aexit__(*exc)
        finally:
            self.telemetry.close()
            self._log.close()

    async def deliver(self, response: Response, session: str) -> Mapping[str, Any] | None:
        """Deliver through the cascade (or the forced tier); the receipt as a dict."""
        receipt = await self.sender.deliver(response, session, tier=self.tier)
        return receipt.to_dict()

    def outbox_pending(self) -> int:
        """Entries still in the sender's outbox."""
        return len(Outbox(self.home / "outbox").names())


class WorkerSender(ChildProcess):
    """A sender *process* (:mod:`mcp_cascade.soak.worker`) that the scenario kills and restarts.

    Stopped by EOF on its stdin (it finishes what it has first). Every
    ``oneshot_every``-th response instead goes through its own
    ``mcp-cascade send`` process, some of which are killed mid-flight.
    """

    stop_grace_s = 30.0

    def __init__(self, home: Path, logs: Path, *, oneshot_every: int = 0) -> None:
        super().__init__(logs / "worker.log")
        self.home = home
        self.logs = logs
        self.oneshot_every = oneshot_every
        self.kills = 0
        self.oneshots = 0
        self.oneshot_kills = 0
        self.kill_next_oneshot_after: float | None = None
        self._waiting: dict[str, anyio.Event] = {}
        self._receipts: dict[str, Mapping[str, Any]] = {}
        self._up = anyio.Event()
        self._tg: TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._sent = 0

    async def __aenter__(self) -> WorkerSender:
        async with AsyncExitStack() as stack:
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)
            await self.start()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._stack is not None:
            await self._stack.aclose()

    def command(self) -> list[str]:
        """The worker: receipts on stdout, one per response read from stdin."""
        return [sys.executable, "-m", "mcp_cascade.soak.worker", "--home", str(self.home)]

    def environment(self) -> dict[str, str]:
        """The inherited environment without the harness's own ``MCP_CASCADE_*`` settings."""
        return _child_env()

    async def ask_to_stop(self) -> None:
        """EOF: it finishes what it has, then exits."""
        if self.process is not None and self.process.stdin is not None:
            await self.process.stdin.aclose()

    async def start(self) -> None:
        """Start a worker process and read its receipts."""
        assert self._tg is not None
        process = await self.spawn(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._tg.start_soon(self._read, process)
        self._up.set()

    async def kill_and_restart(self, down_s: float = 0.0) -> None:
        """SIGKILL the worker (what it had in flight gets no receipt), then start another."""
        process = self.process
        assert process is not None
        self._up = anyio.Event()
        process.send_signal(signal.SIGKILL)
        await process.wait()
        self.kills += 1
        for event in self._waiting.values():
            event.set()  # sent to the dead process: no receipt will come (its reader may lag behind)
        await anyio.sleep(down_s)
        await self.start()

    async def _read(self, process: Process) -> None:
        async for line in stdout_lines(process):
            try:
                receipt = json.loads(line)["receipt"]
            except (ValueError, KeyError, TypeError):
                continue
            rid = receipt.get("response_id")
            self._receipts[rid] = receipt
            if (event := self._waiting.get(rid)) is not None:
                event.set()
        await process.wait()
        if process is self.process:
            for event in self._waiting.values():
                event.set()  # no receipt will come from this process

    async def deliver(self, response: Response, session: str) -> Mapping[str, Any] | None:
        """Hand ``response`` to the worker (or a one-shot ``mcp-cascade send``); None when it died first."""
        self._sent += 1
        if self.oneshot_every and self._sent % self.oneshot_every == 0:
            return await self.oneshot(response, session)
        await self._up.wait()
        process = self.process
        assert process is not None and process.stdin is not None
        done = self._waiting[response.id] = anyio.Event()
        self._receipts.pop(response.id, None)
        try:
            line = json.dumps({"response": response.to_dict(), "session": session}) + "\n"
            await process.stdin.send(line.encode())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            del self._waiting[response.id]
            return None
        await done.wait()
        del self._waiting[response.id]
        return self._receipts.pop(response.id, None)

    async def oneshot(self, response: Response, session: str) -> Mapping[str, Any] | None:
        """``mcp-cascade send`` as a script runs it; killed with SIGKILL when a kill is pending."""
        self.oneshots += 1
        text = response.text or ""
        command = [
            sys.executable,
            "-m",
            "mcp_cascade",
            "send",
            "--home",
            str(self.home),
            "--session",
            session,
            "--text",
            text,
            "--id",
            response.id,
            "--user-id",
            str(response.user.id),
        ]
        stderr = (self.logs / "send.log").open("ab")
        process = await anyio.open_process(command, stdout=subprocess.PIPE, stderr=stderr, env=_child_env())
        stderr.close()
        kill_after, self.kill_next_oneshot_after = self.kill_next_oneshot_after, None
        async with process:
            if kill_after is not None:
                with anyio.move_on_after(kill_after) as scope:
                    await process.wait()
                if scope.cancelled_caught and process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
                    self.oneshot_kills += 1
                    return None
            assert process.stdout is not None
            out = b"".join([chunk async for chunk in process.stdout])
            await process.wait()
        try:
            receipt: Mapping[str, Any] = json.loads(out)
        except ValueError:
            return None
        return receipt

    def outbox_pending(self) -> int:
        """Entries still in the outbox shared by every sender process on this home."""
        return len(Outbox(self.home / "outbox").names())
