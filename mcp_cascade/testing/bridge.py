"""A real ``mcp-cascade bridge`` subprocess for tests, the demo and users' own tests.

Pair it with :class:`mcp_cascade.testing.fake_api.FakeTelegram` (the Bot API)
and :class:`mcp_cascade.testing.ServeProcess` (the sessions)::

    async with FakeTelegram().serving() as fake, BridgeProcess(home, fake.base_url, allow=[42]) as bridge:
        await bridge.wait_ready()
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from mcp_cascade.durable import read_json
from mcp_cascade.receive.outbound import BRIDGE_JSON
from mcp_cascade.testing.process import ChildProcess, module_command


def random_token() -> str:
    """A token of Telegram's shape (``<bot id>:<secret>``), different every call."""
    return f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)}"


class BridgeProcess(ChildProcess):
    """One bridge subprocess; stdout and stderr go to files under the home's parent. Stopped by SIGTERM."""

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
        super().__init__(home.parent / f"{name}.stderr", env=env)
        self.home = home
        self.api_base = api_base
        self.token = token or random_token()
        self.allow = list(allow)
        self.args = list(args)
        self.stdout_path = home.parent / f"{name}.stdout"

    def command(self) -> list[str]:
        """The command line that starts the bridge."""
        cmd = module_command("bridge", "--home", self.home, "--telegram-api-base", self.api_base)
        if self.allow:
            cmd += ["--allow", ",".join(str(u) for u in self.allow)]
        return cmd + self.args

    def environment(self) -> dict[str, str]:
        """The inherited environment, with the bot token (never on the command line)."""
        env = super().environment()
        if self.token:
            env["TELEGRAM_BOT_TOKEN"] = self.token
        return env

    async def __aenter__(self) -> BridgeProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Spawn the bridge (again, after a kill)."""
        with self.stdout_path.open("ab") as out:
            await self.spawn(stdin=subprocess.DEVNULL, stdout=out)

    def info(self) -> dict[str, Any] | None:
        """This process's bridge.json, once it is published."""
        data = read_json(self.home / BRIDGE_JSON)
        if isinstance(data, dict) and self.process is not None and data.get("pid") == self.process.pid:
            return data
        return None

    async def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the bridge listens and has published bridge.json; raise with its stderr if it exits."""
        return await self.wait_published(self.info, "bridge", timeout)

    async def wait_log(self, needle: str, timeout: float = 20.0) -> None:
        """Wait until the bridge's stderr contains ``needle``."""
        with anyio.fail_after(timeout):
            while needle not in self.stderr_text():  # noqa: ASYNC110 - another process writes the file
                await anyio.sleep(0.02)
