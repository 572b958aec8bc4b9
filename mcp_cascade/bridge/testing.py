"""A real ``mcp-cascade bridge`` subprocess for tests, the demo and users' own tests.

Pair it with :class:`mcp_cascade.bridge.fake_api.FakeTelegram` (the Bot API)
and :class:`mcp_cascade.testing.ServeProcess` (the sessions)::

    async with FakeTelegram().serving() as fake, BridgeProcess(home, fake.base_url, allow=[42]) as bridge:
        await bridge.wait_ready()
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

from mcp_cascade._fs import read_json
from mcp_cascade.outbound import BRIDGE_JSON

_REPO = str(Path(__file__).resolve().parent.parent.parent)


def random_token() -> str:
    """A token of Telegram's shape (``<bot id>:<secret>``), different every call."""
    return f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)}"


class BridgeProcess:
    """One bridge subprocess; stdout and stderr go to files under the home's parent."""

    def __init__(
        self,
        home: Path,
        api_base: str,
        *,
        token: str | None = None,
        allow: Iterable[int] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        name: str = "bridge",
    ) -> None:
        self.home = home
        self.api_base = api_base
        self.token = token or random_token()
        self.allow = list(allow)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.stdout_path = home.parent / f"{name}.stdout"
        self.stderr_path = home.parent / f"{name}.stderr"
        self.process: Process | None = None

    def command(self) -> list[str]:
        """The command line that starts the bridge."""
        cmd = [sys.executable, "-m", "mcp_cascade", "bridge", "--home", str(self.home)]
        cmd += ["--telegram-api-base", self.api_base]
        if self.allow:
            cmd += ["--allow", ",".join(str(u) for u in self.allow)]
        return cmd + self.args

    async def __aenter__(self) -> BridgeProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Spawn the bridge (again, after a kill)."""
        env = {**os.environ, **self.extra_env}
        env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
        if self.token:
            env["TELEGRAM_BOT_TOKEN"] = self.token
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = await anyio.open_process(
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env
            )

    def info(self) -> dict[str, Any] | None:
        """This process's bridge.json, once it is published."""
        data = read_json(self.home / BRIDGE_JSON)
        if isinstance(data, dict) and self.process is not None and data.get("pid") == self.process.pid:
            return data
        return None

    async def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the bridge listens and has published bridge.json; raise with its stderr if it exits."""
        assert self.process is not None
        with anyio.fail_after(timeout):
            while (data := self.info()) is None:
                if self.process.returncode is not None:
                    raise RuntimeError(f"bridge exited {self.process.returncode}: {self.stderr_tail()}")
                await anyio.sleep(0.02)
        return data

    async def wait_log(self, needle: str, timeout: float = 20.0) -> None:
        """Wait until the bridge's stderr contains ``needle``."""
        with anyio.fail_after(timeout):
            while needle not in self.stderr_text():  # noqa: ASYNC110 - another process writes the file
                await anyio.sleep(0.02)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the bridge."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the bridge to exit; returns its exit code."""
        assert self.process is not None
        with anyio.fail_after(timeout):
            return await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(10):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def stderr_text(self) -> str:
        """Everything the bridge wrote to stderr."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 20) -> str:
        """The last lines of stderr."""
        return "\n".join(self.stderr_text().splitlines()[-lines:])
