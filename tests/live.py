"""A synchronous serve subprocess for property-based tests (hypothesis drives sync functions).

The harness's :class:`~mcp_cascade.testing.ServeProcess` is async; hypothesis calls plain
functions, so this one reads serve's stdout from a thread. It starts serve the same way.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from mcp_cascade.sessions import SessionInfo, read_session
from mcp_cascade.testing import module_command


class LiveServe:
    """serve with an initialized client; stdout frames collected by a thread."""

    def __init__(self, home: Path, session: str) -> None:
        self.home = home
        self.session = session
        self.frames: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            module_command("serve", "--home", home, "--session", session),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.info = self._wait_session()
        self._send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
        )
        self.wait(lambda: any(f.get("id") == 1 for f in self.frames))
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.secret = (home / "secret").read_text().strip()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                frame = json.loads(line)
                ok = isinstance(frame, dict) and frame.get("jsonrpc") == "2.0"
            except ValueError:
                ok = False
            with self._lock:
                if ok:
                    self.frames.append(frame)
                else:
                    self.bad_lines.append(line)

    def _send(self, frame: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(frame) + "\n").encode())
        self.proc.stdin.flush()

    def _wait_session(self) -> SessionInfo:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = read_session(self.home, self.session)
            if info is not None and info.pid == self.proc.pid:
                return info
            time.sleep(0.01)
        raise TimeoutError("serve did not publish session.json")

    def wait(self, predicate: Any, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met")
            time.sleep(0.005)

    def channel_ids(self) -> list[str]:
        with self._lock:
            return [
                f["params"]["meta"]["response_id"]
                for f in self.frames
                if f.get("method") == "notifications/claude/channel"
            ]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
