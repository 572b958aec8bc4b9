"""cascade_selftest and inspect selftest: synthetic responses through each tier of a live session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_cascade.testing import ServeProcess

pytestmark = pytest.mark.anyio


def tool_json(result: dict[str, Any]) -> Any:
    return json.loads(result["content"][0]["text"])


async def test_the_selftest_tool_delivers_through_every_tier_without_a_channel_message(home: Path) -> None:
    async with ServeProcess(home, "probe-a") as serve:
        await serve.wait_session()
        await serve.initialize()
        with anyio.fail_after(30):
            report = tool_json(await serve.call_tool("cascade_selftest"))
        by_tier = {t["tier"]: t for t in report["tiers"]}
        assert sorted(by_tier) == [1, 2, 3]
        for tier in (1, 2, 3):
            assert by_tier[tier]["status"] == "delivered", by_tier[tier]
            assert by_tier[tier]["hidden"] is True
            assert by_tier[tier]["metric_moved"] is True
            assert 0 < by_tier[tier]["latency_ms"] < 5000
        assert report["ok"] is True
        assert list((home / "sessions" / "probe-a" / "inbox" / "new").iterdir()) == []
        # Still alive, and nothing reached the person's view.
        assert (await serve.call_tool("cascade_status"))["isError"] is False
        assert serve.channel() == []
    assert serve.bad_lines == []


def inspect(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mcp_cascade", "inspect", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


async def test_inspect_selftest_probes_a_live_session_and_names_what_it_checked(home: Path) -> None:
    async with ServeProcess(home, "probe-b") as serve:
        await serve.wait_session()
        await serve.initialize()
        with anyio.fail_after(60):
            done = await anyio.to_thread.run_sync(lambda: inspect(home, "selftest", "probe-b", "--json"))
            table = await anyio.to_thread.run_sync(lambda: inspect(home, "selftest", "probe-b"))
        assert serve.channel() == []
    (report,) = json.loads(done.stdout)
    assert report["session"] == "probe-b"
    assert [t["status"] for t in report["tiers"]] == ["delivered"] * 3
    assert report["ok"] is True and done.returncode == 0
    assert "kept out of view" in table.stdout and "signed webhook POST" in table.stdout
    assert "passed" in table.stdout and table.returncode == 0


async def test_a_selftest_without_an_mcp_client_reports_the_webhook_tiers_queued(home: Path) -> None:
    async with ServeProcess(home, "probe-c") as serve:
        await serve.wait_session()
        with anyio.fail_after(60):
            done = await anyio.to_thread.run_sync(lambda: inspect(home, "selftest", "probe-c", "--json"))
    (report,) = json.loads(done.stdout)
    assert [t["status"] for t in report["tiers"]] == ["queued", "queued", "queued"]
    assert report["tiers"][0]["detail"].startswith("HTTP 202 queued")
    assert done.returncode == 1


async def test_inspect_selftest_of_a_session_that_is_not_running_is_one_clear_line(home: Path) -> None:
    (home / "sessions" / "gone").mkdir(parents=True)
    done = await anyio.to_thread.run_sync(lambda: inspect(home, "selftest", "gone"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "'gone' is not running" in done.stderr
    assert "Traceback" not in done.stderr
