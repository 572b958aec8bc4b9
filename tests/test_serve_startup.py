"""serve's start-up and shutdown contract: discovery file, secret, clear failures, stdout kept clean."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from mcp_cascade.config import load_config
from mcp_cascade.receive.holder import hold
from mcp_cascade.receive.server import Serve
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio


async def test_session_json_is_published_before_initialize_with_the_real_urls(home: Path) -> None:
    async with ServeProcess(home, "disco") as serve:
        info = await serve.wait_session()
        raw = json.loads((home / "sessions" / "disco" / "session.json").read_text())
        assert raw["protocol"] == 1
        assert set(raw) >= {"session_id", "pid", "webhook_url", "health_url", "started_at", "cwd", "label"}
        assert info.webhook_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            health = await client.get(info.health_url)
        assert health.status_code == 200
        assert health.json()["session_id"] == "disco"


async def test_session_json_appears_only_once_every_tier_it_advertises_is_up(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve's lifespan in this process: a task looks for session.json at every scheduling point of
    # start-up and, the moment it sees it, reads health as a sender or inspect would.
    root = logging.getLogger()  # serve routes logging and uncaught exceptions to its log: restore them
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    serve = Serve(
        load_config(home, {}),
        hold(home, "ready", explicit=True, wait_s=0),
        cwd=home,
        label="ready",
    )
    published = SessionPaths(home, "ready").session_json
    seen: list[Mapping[str, Any]] = []
    sighted = anyio.Event()

    async def first_sight() -> None:
        while not published.exists():  # written by plain file I/O: no event to wait on
            await anyio.lowlevel.checkpoint()
        seen.append(serve.health()["tiers"])
        sighted.set()

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(first_sight)
                async with serve.running() as running:
                    await sighted.wait()
                    running.cancel_scope.cancel()
    finally:
        logging.captureWarnings(False)
    (tiers,) = seen
    assert set(tiers) == {"webhook", "file"}
    assert all(tier["status"] != "down" for tier in tiers.values()), tiers
    assert tiers["file"]["watcher_alive"] is True and tiers["file"]["watch_armed"] is True
    assert tiers["file"]["inbox_writable"] is True and tiers["webhook"]["url"]
    assert not published.exists()  # and the lifespan removed it on the way out


async def test_the_secret_is_created_0600_in_a_0700_home_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    async with ServeProcess(home, "sec") as serve:
        await serve.wait_session()
    secret = (home / "secret").read_text().strip()
    assert secret.startswith("whsec_")
    assert stat.S_IMODE((home / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    async with ServeProcess(home, "sec2") as serve:
        await serve.wait_session()
    assert (home / "secret").read_text().strip() == secret


async def test_delivered_ids_are_remembered_across_restarts(home: Path) -> None:
    data = body(id="tg:9:9")
    raw = encode(data)
    async with ServeProcess(home, "memo") as serve, httpx.AsyncClient() as client:
        info = await serve.wait_session()
        await serve.initialize()
        secret = (home / "secret").read_text().strip()
        first = await client.post(info.webhook_url, content=raw, headers=sign(secret, "tg:9:9", raw))
        assert first.json()["status"] == "delivered"
        await serve.close_stdin()
        await serve.wait_exit()
        await serve.start()
        info = await serve.wait_session()
        await serve.initialize()
        again = await client.post(info.webhook_url, content=raw, headers=sign(secret, "tg:9:9", raw))
        assert again.json()["status"] == "duplicate"
    assert len(serve.channel()) == 1


def _run(args: list[str], home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_cascade", "serve", "--home", str(home), "--session", "fail", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_a_taken_port_is_one_clear_line_on_stderr_and_nothing_on_stdout(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(["--sidecar-port", str(port)], home)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "sidecar_port" in result.stderr and str(port) in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    result = _run([], blocker / "home")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "home" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_config_is_a_clear_error(home: Path) -> None:
    result = _run([], home, env={"MCP_CASCADE_OVERALL_TIMEOUT_MS": "soon"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert "overall_timeout_ms" in result.stderr and "Traceback" not in result.stderr


async def test_garbage_on_stdin_never_produces_anything_but_json_rpc_on_stdout(home: Path) -> None:
    async with ServeProcess(home, "noise") as serve:
        await serve.wait_session()
        assert serve.process is not None and serve.process.stdin is not None
        await serve.process.stdin.send(b'this is not json\n{"jsonrpc": "2.0", "method": 5}\n\n')
        await serve.initialize()
        listed = await serve.request("tools/list")
        assert {t["name"] for t in listed["result"]["tools"]} >= {
            "get_responses",
            "wait_for_response",
            "cascade_status",
            "ask_user",
            "reply",
            "cascade_selftest",
        }
    assert serve.bad_lines == []


async def test_a_discover_probe_before_initialize_is_refused_so_the_client_falls_back(home: Path) -> None:
    async with ServeProcess(home, "probe") as serve:
        await serve.wait_session()
        probe = await serve.request(
            "server/discover", {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
        )
        assert probe["error"]["code"] == -32601
        init = await serve.initialize()
        assert init["result"]["capabilities"]["experimental"] == {"claude/channel": {}}
        assert init["result"]["protocolVersion"] == "2025-11-25"
