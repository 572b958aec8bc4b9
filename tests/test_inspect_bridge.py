"""inspect status against a real bridge (fake Bot API) and two live sessions, one behind an open breaker."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from mcp_cascade.durable import atomic_write_json, read_json
from mcp_cascade.testing.fake_api import FakeTelegram
from tests.bridge_helpers import ALICE, bridge, greet, message_with, sessions, tool_json
from tests.helpers import run_inspect

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram().serving() as running:
        yield running


def inspect(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_inspect(home, *args, columns=200)


def refuse_webhook(home: Path, session: str) -> None:
    """Point the session's published webhook at a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = home / "sessions" / session / "session.json"
    atomic_write_json(
        path, {**read_json(path), "webhook_url": f"http://127.0.0.1:{port}/webhook/bridge-response"}
    )


async def test_status_reports_two_sessions_and_the_bridge_with_one_breaker_open(
    home: Path, fake: FakeTelegram
) -> None:
    # One refused delivery opens a breaker, and it stays open for a minute: the picture holds still.
    (home / "config.toml").write_text(
        f"allow = [{ALICE.id}]\nbreaker_threshold = 1\n"
        "breaker_reset_ms = 60000\nbreaker_max_reset_ms = 120000\n"
    )
    with anyio.fail_after(90):
        async with sessions(home, "proj-a", "proj-b") as (a, b), bridge(home, fake):
            await greet(fake)
            # proj-a asks and gets its answer on tier 1.
            asked = tool_json(
                await a.call_tool("ask_user", {"question": "Deploy?", "options": ["yes", "no"]})
            )
            question = await fake.wait_for(message_with(fake, ALICE.id, "Deploy?"))
            fake.press(ALICE, question, "yes")
            (a_note,) = await a.wait_channel(1)
            assert a_note["params"]["meta"]["request_id"] == asked["request_id"]
            # proj-b's webhook stops answering; Alice's reply to it fails over to the inbox.
            tool_json(await b.call_tool("reply", {"chat_id": ALICE.id, "text": "B wants a word"}))
            refuse_webhook(home, "proj-b")
            fake.message(ALICE, "here is my word")
            (b_note,) = await b.wait_channel(1)
            assert b_note["params"]["meta"]["tier"] == "3"
            done = await anyio.to_thread.run_sync(lambda: inspect(home, "status", "--json"))
            table = await anyio.to_thread.run_sync(lambda: inspect(home, "status"))
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    views = {s["session"]: s for s in snap["sessions"]}
    assert set(views) == {"proj-a", "proj-b"}
    assert all(v["liveness"] == "live" and v["tiers"]["webhook"] == "ok" for v in views.values())
    assert views["proj-a"]["breaker"]["state"] == "closed"
    assert views["proj-b"]["breaker"]["state"] == "open"
    assert 30 < views["proj-b"]["breaker"]["next_probe_at"] - time.time() <= 60
    assert views["proj-a"]["latency"]["1"]["n"] == 1
    assert views["proj-b"]["latency"]["3"]["n"] == 1

    bridge_view = snap["bridge"]
    assert bridge_view["liveness"] == "live"
    assert bridge_view["status"] == "degraded"
    assert bridge_view["breakers"]["proj-b"]["state"] == "open"
    assert any(
        p.startswith("bridge: breaker towards proj-b is open, next probe in") for p in bridge_view["problems"]
    )
    failovers = {(f["from_tier"], f["to_tier"], f["reason"]) for f in bridge_view["failovers"]}
    # Nobody listening: straight to the inbox, no tier-2 retries against a closed port.
    assert failovers == {("1", "3", "refused")}
    assert bridge_view["outcomes"]["delivered"] >= 1 and bridge_view["outcomes"]["queued"] >= 1
    assert set(bridge_view["latency"]) >= {"1"}

    assert "proj-b" in table.stdout and "open probe in" in table.stdout
    assert "breaker towards proj-b is open" in table.stdout
    assert "Failovers since the bridge started" in table.stdout and "refused" in table.stdout
