"""A stand-in for Claude Code: spawns ``mcp-cascade serve`` and speaks raw JSON-RPC over its stdio.

Used by the tests, the demo, the benchmarks and the soak harness; users can
use it to test their own bridges. It records every stdout line, so a test can
assert that nothing but JSON-RPC frames ever appeared there.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

from mcp_cascade.sessions import SessionInfo, list_sessions, read_session
from mcp_cascade.testing.process import ChildProcess, module_command, stdout_lines

HANDSHAKE_VERSION = "2025-11-25"


class ServeProcess(ChildProcess):
    """One ``mcp-cascade serve`` subprocess and its MCP client side.

    Stopped by EOF on its stdin, as Claude Code does, then SIGKILL after :attr:`stop_grace_s`.

    ``notifications`` collects every server→client notification in arrival
    order; ``bad_lines`` every stdout line that was not a JSON-RPC frame.
    """

    def __init__(
        self,
        home: Path,
        session: str | None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        name = session or f"derived-{id(self):x}"
        super().__init__(stderr_path or home.parent / f"serve-{home.name}-{name}.stderr", env=env)
        self.home = home
        # None: no --session, so serve derives it from ``cwd`` as it does under .mcp.json; the id
        # it took is known once :meth:`wait_session` has seen its session.json.
        self.explicit = session is not None
        self.session = session or ""
        self.args = list(args)
        self.cwd = cwd
        self.frames: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._responses: dict[int | str, dict[str, Any]] = {}
        self._changed = anyio.Event()
        self._next_id = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self.exit_code: int | None = None
        self.stop_grace_s = 5.0

    def command(self) -> list[str]:
        """The command line that starts serve."""
        return module_command(
            "serve", "--home", self.home, *(["--session", self.session] if self.explicit else []), *self.args
        )

    async def __aenter__(self) -> ServeProcess:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)

    async def start(self) -> None:
        """Spawn serve (again, after a kill) and start reading its stdout."""
        assert self._tg is not None, "use as an async context manager"
        process = await self.spawn(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.exit_code = None
        self._tg.start_soon(self._read, process)

    async def _read(self, process: Process) -> None:
        async for line in stdout_lines(process):
            self._line(line)
        code = await process.wait()
        if process is self.process:  # a reader of an earlier, restarted process must not report
            self.exit_code = code
        self._poke()

    def _line(self, line: str) -> None:
        try:
            frame = json.loads(line)
        except ValueError:
            self.bad_lines.append(line)
            self._poke()
            return
        if not isinstance(frame, dict) or frame.get("jsonrpc") != "2.0":
            self.bad_lines.append(line)
            self._poke()
            return
        frame["_received"] = time.perf_counter()
        self.frames.append(frame)
        if "id" in frame and ("result" in frame or "error" in frame):
            self._responses[frame["id"]] = frame
        elif "method" in frame and "id" not in frame:
            self.notifications.append(frame)
        self._poke()

    def _poke(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Write one JSON-RPC frame to serve's stdin."""
        assert self.process is not None and self.process.stdin is not None
        await self.process.stdin.send((json.dumps(frame) + "\n").encode())

    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send a request and return its whole response frame."""
        self._next_id += 1
        rid = self._next_id
        frame: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            frame["params"] = params
        await self.send(frame)
        with anyio.fail_after(timeout):
            while rid not in self._responses:
                await self._changed.wait()
        return self._responses.pop(rid)

    async def initialize(self, *, capabilities: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The handshake Claude Code does: initialize, then notifications/initialized."""
        answer = await self.request(
            "initialize",
            {
                "protocolVersion": HANDSHAKE_VERSION,
                "capabilities": dict(capabilities or {}),
                "clientInfo": {"name": "mcp-cascade-testing", "version": "1"},
            },
        )
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """tools/call; returns the result (or raises on a JSON-RPC error)."""
        frame = await self.request("tools/call", {"name": name, "arguments": dict(arguments or {})}, timeout)
        if "error" in frame:
            raise RuntimeError(f"tools/call {name}: {frame['error']}")
        result: dict[str, Any] = frame["result"]
        return result

    async def wait_session(self, timeout: float = 15.0) -> SessionInfo:
        """Wait for serve to publish session.json (its sidecar is listening)."""
        info = await self.wait_published(self._published, "serve", timeout)
        self.session = info.session_id
        return info

    def _published(self) -> SessionInfo | None:
        found = (
            [read_session(self.home, self.session)]
            if self.explicit
            else [info for _, info in list_sessions(self.home)]
        )
        pid = self.process.pid if self.process is not None else None
        return next((info for info in found if info is not None and info.pid == pid), None)

    def channel(self, method: str = "notifications/claude/channel") -> list[dict[str, Any]]:
        """Every notification of ``method`` received so far."""
        return [n for n in self.notifications if n.get("method") == method]

    async def wait_for(
        self, predicate: Any, timeout: float = 15.0, what: Callable[[], str] | None = None
    ) -> None:
        """Wait until ``predicate()`` is true, re-checking on every frame.

        On timeout the error says what was awaited (``what()``, when given), whether serve still
        runs, and how its stderr ends: a failing test shows why without digging in its folders.
        """
        try:
            with anyio.fail_after(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            code = self.process.returncode if self.process is not None else None
            state = "running" if code is None else f"exited {code}"
            waited = what() if what is not None else "its condition"
            tail = self.stderr_tail()
            raise TimeoutError(
                f"serve ({state}) did not reach {waited} in {timeout:g} s; stderr ends:\n{tail}"
            ) from None

    async def wait_channel(
        self, count: int, timeout: float = 15.0, method: str = "notifications/claude/channel"
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` notifications of ``method`` have arrived."""
        await self.wait_for(
            lambda: len(self.channel(method)) >= count,
            timeout,
            lambda: f"{count} {method} (has {len(self.channel(method))})",
        )
        return self.channel(method)

    async def close_stdin(self) -> None:
        """EOF on serve's stdin: Claude Code closing the session."""
        if self.process is not None and self.process.stdin is not None:
            await self.process.stdin.aclose()

    async def ask_to_stop(self) -> None:
        """EOF, as Claude Code does (SIGKILL follows if serve does not exit in time)."""
        await self.close_stdin()
