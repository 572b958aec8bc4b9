"""A response failing over from tier 1 to tier 3, followed in the audit trail, inspect trace and the logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_cascade.durable import atomic_write_json, read_json
from mcp_cascade.testing import ServeProcess

pytestmark = pytest.mark.anyio


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mcp_cascade", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_a_failover_from_tier_1_to_tier_3_shows_both_steps_with_reasons_and_timings(home: Path) -> None:
    async with ServeProcess(home, "fo") as serve:
        await serve.wait_session()
        await serve.initialize()
        # The session's webhook stops answering: senders reading session.json get connection refused.
        session_json = home / "sessions" / "fo" / "session.json"
        published = read_json(session_json)
        atomic_write_json(
            session_json,
            {**published, "webhook_url": f"http://127.0.0.1:{closed_port()}/webhook/bridge-response"},
        )
        with anyio.fail_after(60):
            sent = await anyio.to_thread.run_sync(
                lambda: cli(
                    home,
                    "send",
                    "--session",
                    "fo",
                    "--text",
                    "deploy it",
                    "--id",
                    "tg:77:1",
                    "--tier-order",
                    "webhook,file",
                    "--log-level",
                    "info",
                )
            )
            assert sent.returncode == 0, sent.stderr
            receipt = json.loads(sent.stdout)
            cid = receipt["correlation_id"]
            (note,) = await serve.wait_channel(1)
            trace_run = await anyio.to_thread.run_sync(lambda: cli(home, "inspect", "trace", cid, "--json"))
            table = await anyio.to_thread.run_sync(lambda: cli(home, "inspect", "trace", "tg:77:1"))
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(published["health_url"].replace("/health", "/metrics"))).text
    serve_log = json_lines(serve.stderr_path.read_text())

    # The receipt: refused on tier 1, durable in the inbox on tier 3.
    assert (receipt["status"], receipt["tier"]) == ("queued", 3)
    assert [(a["tier"], a["outcome"]) for a in receipt["attempts"]] == [(1, "refused"), (3, "ok")]
    assert note["params"]["meta"]["tier"] == "3"
    assert note["params"]["meta"]["correlation_id"] == cid

    # The audit trail, through inspect trace: the sender's steps, then serve's.
    assert trace_run.returncode == 0, trace_run.stderr
    trace = json.loads(trace_run.stdout)
    steps = [(s["component"], s["event"], s["tier"]) for s in trace["steps"]]
    # Each process's steps in its own order (the two interleave in time).
    assert [x for x in steps if x[0] == "send"] == [
        ("send", "outbox", None),
        ("send", "attempt", 1),
        ("send", "failover", 3),
        ("send", "attempt", 3),
        ("send", "sent", 3),
    ]
    assert [x for x in steps if x[0] == "serve"] == [
        ("serve", "claimed", 3),
        ("serve", "received", 3),
        ("serve", "durable", 3),
        ("serve", "pushed", 3),
    ]
    by_event = {(s["component"], s["event"], s["tier"]): s for s in trace["steps"]}
    refused = by_event[("send", "attempt", 1)]
    assert refused["detail"]["outcome"] == "refused"
    assert refused["reason"] and refused["latency_ms"] > 0
    failover = by_event[("send", "failover", 3)]
    assert failover["detail"] == {**failover["detail"], "from_tier": 1, "to_tier": 3, "kind": "refused"}
    assert failover["reason"] == refused["reason"]
    assert by_event[("send", "sent", 3)]["detail"]["status"] == "queued"
    assert by_event[("serve", "pushed", 3)]["latency_ms"] > 0
    assert trace["outcome"] == "delivered into fo by tier 3"
    assert trace["tiers"] == [1, 3]
    assert trace["correlation_ids"] == [cid]
    starts = [s["since_start_ms"] for s in trace["steps"]]
    assert starts == sorted(starts) and trace["total_ms"] == starts[-1] > 0
    assert "failover" in table.stdout and "kind=refused" in table.stdout

    # The logs of both processes, under the one correlation id.
    send_log = [r for r in json_lines(sent.stderr) if r["correlation_id"] == cid]
    assert [r["event"] for r in send_log if r["event"] in ("attempt", "failover")] == ["attempt", "failover"]
    for record in send_log:
        if record["event"] in ("attempt", "failover"):
            assert record["reason"] == refused["reason"]
            assert record["response_id"] == "tg:77:1" and record["session"] == "fo"
    served = [r["event"] for r in serve_log if r["correlation_id"] == cid]
    assert "durable" in served and "pushed" in served
    assert all(r["tier"] == 3 for r in serve_log if r["correlation_id"] == cid and r["event"] == "pushed")
    # On the session's side it is one response received by tier 3 and delivered:
    # received (1) = delivered + duplicate + rejected + pending.
    samples = {
        (s.labels.get("tier"), s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "mcp_cascade_responses"
        for s in family.samples
    }
    assert samples[("3", "delivered")] == 1
    assert (
        sum(v for (_, outcome), v in samples.items() if outcome in ("delivered", "duplicate", "rejected"))
        == 1
    )
    assert serve.bad_lines == []
