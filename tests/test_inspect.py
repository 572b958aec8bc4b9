"""mcp-cascade inspect, run as the operator runs it (a subprocess) against real serve processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import make_response
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, run_inspect, sign

pytestmark = pytest.mark.anyio


async def inspect(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: run_inspect(home, *args))


async def post(info_url: str, home: Path, data: dict[str, Any]) -> httpx.Response:
    secret = (home / "secret").read_text().strip()
    raw = encode(data)
    async with httpx.AsyncClient() as client:
        return await client.post(info_url, content=raw, headers=sign(secret, str(data["id"]), raw))


async def test_status_tells_live_waiting_dead_and_stopped_sessions_apart(home: Path) -> None:
    with anyio.fail_after(60):
        async with ServeProcess(home, "stopped") as stopped:
            info = await stopped.wait_session()
            assert (await post(info.webhook_url, home, body(id="s:1"))).status_code == 202
        async with ServeProcess(home, "dead") as dead:
            info = await dead.wait_session()
            assert (await post(info.webhook_url, home, body(id="d:1"))).status_code == 202
            dead.kill(signal.SIGKILL)
            await dead.wait_exit()
            dead_pid = info.pid
        async with ServeProcess(home, "live") as live, ServeProcess(home, "waiting") as waiting:
            live_info = await live.wait_session()
            await live.initialize()
            for n in range(2):
                assert (await post(live_info.webhook_url, home, body(id=f"l:{n}"))).json()[
                    "status"
                ] == "delivered"
            waiting_info = await waiting.wait_session()
            assert (await post(waiting_info.webhook_url, home, body(id="w:1"))).status_code == 202
            done = await inspect(home, "status", "--json")
            table = await inspect(home, "status")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    by_name = {s["session"]: s for s in snap["sessions"]}
    assert set(by_name) == {"stopped", "dead", "live", "waiting"}

    assert by_name["live"]["liveness"] == "live"
    assert by_name["live"]["tiers"]["webhook"] == "ok"
    assert by_name["live"]["latency"]["1"]["n"] == 2
    assert by_name["live"]["outcomes"]["delivered"] == 2
    assert by_name["live"]["queue_depth"] == 0

    assert by_name["waiting"]["liveness"] == "live"
    assert by_name["waiting"]["tiers"]["webhook"] == "degraded"
    assert by_name["waiting"]["queue_depth"] == 1
    assert any("no MCP client has initialized" in p for p in by_name["waiting"]["problems"])

    assert by_name["dead"]["liveness"] == "dead"
    assert f"pid {dead_pid} is gone" in by_name["dead"]["detail"]
    assert by_name["dead"]["queue_depth"] == 1

    assert by_name["stopped"]["liveness"] == "stopped"
    assert by_name["stopped"]["queue_depth"] == 1
    assert by_name["stopped"]["oldest_pending_age_s"] > 0

    assert snap["bridge"]["liveness"] == "absent"
    for word in ("live", "waiting", "dead", "stopped", "t1 ", "p50/p99 ms", "is gone", "Bridge"):
        assert word in table.stdout
    assert "Traceback" not in done.stderr + table.stderr


async def test_trace_shows_every_step_by_response_id_or_correlation_id(home: Path) -> None:
    cid = "5a0d4d52-87a4-4d2b-9c1e-9a1b2c3d4e5f"
    with anyio.fail_after(60):
        async with ServeProcess(home, "traced") as serve:
            info = await serve.wait_session()
            await serve.initialize()
            assert (await post(info.webhook_url, home, body(id="t:1", correlation_id=cid))).status_code == 200
            again = await post(info.webhook_url, home, body(id="t:1"))  # a retry without the correlation id
            assert again.json()["status"] == "duplicate"
        by_id = await inspect(home, "trace", "t:1", "--json")
        by_cid = await inspect(home, "trace", cid, "--json")
        table = await inspect(home, "trace", cid)
        unknown = await inspect(home, "trace", "nope:1")
    assert by_id.returncode == 0, by_id.stderr
    trace = json.loads(by_id.stdout)
    assert json.loads(by_cid.stdout)["steps"] == trace["steps"]
    assert [s["event"] for s in trace["steps"]] == ["received", "durable", "pushed", "received", "duplicate"]
    assert trace["outcome"] == "delivered into traced by tier 1"
    assert trace["tiers"] == [1]
    starts = [s["since_start_ms"] for s in trace["steps"]]
    assert starts == sorted(starts) and starts[0] == 0
    assert trace["total_ms"] == starts[-1]
    assert trace["steps"][-1]["reason"].startswith("first received by tier 1")
    assert "duplicate" in table.stdout and "delivered into traced by tier 1" in table.stdout
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == f"mcp-cascade inspect: no record of 'nope:1' in {home}/audit.jsonl"


async def test_queue_lists_what_waits_and_what_failed_and_retry_moves_a_file_back(home: Path) -> None:
    inbox = home / "sessions" / "q" / "inbox"
    with anyio.fail_after(60):
        async with ServeProcess(home, "q") as serve:
            info = await serve.wait_session()
            assert (await post(info.webhook_url, home, body(id="q:1"))).status_code == 202
    waiting = enqueue(inbox, make_response(type="message", user_id=7, text="later", id="q:file"))
    failed = inbox / "failed" / "00000000000000000001-q_bad.json"
    failed.write_bytes(b'{"id": "q:bad", "type": "message"')
    failed.with_suffix(".reason").write_text("not valid JSON: Expecting ',' delimiter\n")

    listed = await inspect(home, "queue", "q", "--json")
    assert listed.returncode == 0, listed.stderr
    items = {i["id"]: i for i in json.loads(listed.stdout)}
    assert set(items) == {"q:1", "q:file", "00000000000000000001-q_bad"}
    assert items["q:1"]["where"] == "store" and items["q:1"]["state"] == "pending"
    assert items["q:1"]["reason"] == "the session is not running"
    assert items["q:file"]["where"] == "inbox/new" and items["q:file"]["file"] == waiting.path.name
    bad = items["00000000000000000001-q_bad"]
    assert bad["where"] == "inbox/failed" and bad["reason"].startswith("not valid JSON")
    assert bad["age_s"] > 1e9  # named 1 ns after the epoch

    table = await inspect(home, "queue")
    assert "3 waiting or failed" in table.stdout

    retried = await inspect(home, "queue", "--retry", failed.name)
    assert retried.returncode == 0, retried.stderr
    assert (inbox / "new" / failed.name).exists()
    assert not failed.exists() and not failed.with_suffix(".reason").exists()
    audit = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["event"] == "retried" and audit[-1]["component"] == "inspect"

    again = await inspect(home, "queue", "--retry", failed.name)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("mcp-cascade inspect: no failed inbox item")


async def test_a_missing_home_is_one_clear_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    for args in (["status"], ["queue"], ["trace", "x"], ["watch", "--count", "1"], ["selftest"]):
        done = await inspect(tmp_path / "nowhere", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1
        assert "no mcp-cascade home at" in done.stderr and "Traceback" not in done.stderr


async def test_watch_redraws_status_and_new_events(home: Path) -> None:
    with anyio.fail_after(60):
        async with ServeProcess(home, "watched") as serve:
            info = await serve.wait_session()
            await serve.initialize()
            assert (await post(info.webhook_url, home, body(id="wt:1"))).status_code == 200
            as_json = await inspect(home, "watch", "--json", "--count", "2", "--interval", "0.05")
            as_table = await inspect(home, "watch", "--count", "1")
    assert as_json.returncode == 0, as_json.stderr
    first, second = (json.loads(line) for line in as_json.stdout.splitlines())
    assert first["status"]["sessions"][0]["session"] == "watched"
    assert [e["response_id"] for e in first["events"]] == ["wt:1"] * 3
    assert second["events"] == []  # nothing new since the first refresh
    assert "Latest response events" in as_table.stdout and "watched" in as_table.stdout


async def test_a_session_whose_process_lives_but_does_not_answer_is_reported_unreachable(home: Path) -> None:
    hung = await anyio.open_process([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        directory = home / "sessions" / "hung"
        directory.mkdir(parents=True)
        (directory / "session.json").write_text(
            json.dumps(
                {
                    "protocol": 1,
                    "session_id": "hung",
                    "pid": hung.pid,
                    "webhook_url": "http://127.0.0.1:9/webhook/bridge-response",
                    "health_url": "http://127.0.0.1:9/health",
                }
            )
        )
        with anyio.fail_after(30):
            done = await inspect(home, "status", "--json")
            missing = await inspect(home, "queue", "nosuch")
    finally:
        hung.kill()
        await hung.wait()
    (view,) = json.loads(done.stdout)["sessions"]
    assert view["liveness"] == "unreachable"
    assert f"pid {hung.pid} does not answer" in view["detail"]
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"mcp-cascade inspect: no session 'nosuch' under {home}/sessions"
