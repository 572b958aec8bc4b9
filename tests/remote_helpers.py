"""Two homes standing for two hosts, sharing nothing but NATS and the copied deployment secret."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_cascade.config import load_config
from mcp_cascade.events import Event
from mcp_cascade.remote.servers import NatsCluster, nats_server_binary
from mcp_cascade.response import Response, make_response
from mcp_cascade.send.cascade import Receipt, Sender
from mcp_cascade.signing import load_or_create_secret

needs_nats = pytest.mark.skipif(nats_server_binary() is None, reason="nats-server is not installed")


def two_homes(tmp_path: Path) -> tuple[Path, Path]:
    """Home A (sender, bridge) and home B (serve): B gets a copy of A's secret, as docs/multi-host.md says."""
    a, b = tmp_path / "host-a", tmp_path / "host-b"
    for home in (a, b):
        home.mkdir(mode=0o700)
    load_or_create_secret(a)
    shutil.copy2(a / "secret", b / "secret")
    return a, b


def nats_env(url: str, **more: str) -> dict[str, str]:
    """The environment that puts a process on NATS."""
    return {"MCP_CASCADE_NATS_URL": url, **{f"MCP_CASCADE_{k.upper()}": v for k, v in more.items()}}


def answer(text: str, session: str, n: int | None = None) -> Response:
    """A typed answer with a stable id."""
    key = n if n is not None else re.sub(r"[^A-Za-z0-9._-]", "_", text)
    return make_response(type="message", user_id=7, text=text, id=f"t:{session}:{key}")


class Recorder:
    """An observer that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.event == name]


@asynccontextmanager
async def remote_sender(home: Path, url: str, **config: Any) -> AsyncIterator[tuple[Sender, Recorder]]:
    """An in-process sender (the code the bridge embeds) on NATS, connected."""
    env = {"MCP_CASCADE_HOME": str(home), **nats_env(url, **{k: str(v) for k, v in config.items()})}
    loaded = load_config(home, env)
    recorder = Recorder()
    async with Sender(home, loaded.config, recorder) as sender:
        assert sender.remote is not None
        with anyio.fail_after(30):
            await sender.remote.link.ready.wait()
        yield sender, recorder


async def deliver_until_durable(
    sender: Sender, response: Response, session: str, timeout: float = 60
) -> Receipt:
    """Deliver; a 'failed' receipt (NATS down past the budget) is tried again, as the outbox does."""
    with anyio.fail_after(timeout):
        while True:
            receipt = await sender.deliver(response, session)
            if receipt.status != "failed":
                return receipt
            await anyio.sleep(0.2)


@asynccontextmanager
async def nats(tmp_path: Path, size: int = 1) -> AsyncIterator[NatsCluster]:
    """Real nats-server node(s) with file storage under ``tmp_path``, stopped at the end."""
    cluster = NatsCluster(tmp_path / "nats", size)
    await anyio.to_thread.run_sync(cluster.__enter__)
    try:
        yield cluster
    finally:
        await anyio.to_thread.run_sync(cluster.close)


def cli_env(url: str) -> dict[str, str]:
    """The environment of an ``mcp-cascade`` child running this worktree's code."""
    env = {**os.environ, **nats_env(url)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli(*args: str) -> list[str]:
    """An ``mcp-cascade`` command line."""
    return [sys.executable, "-m", "mcp_cascade", *args]


def contents(serve: Any) -> list[str]:
    """What a session was told, in order."""
    return [n["params"]["content"] for n in serve.channel()]


def iter_texts(prefix: str, count: int) -> Iterator[str]:
    """``prefix-000``, ``prefix-001``, ..."""
    return (f"{prefix}-{i:03d}" for i in range(count))
