"""serve's JSON log lines, as an operator's log shipper would read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio
CORE = {"timestamp", "level", "event", "correlation_id", "response_id", "session", "tier", "latency_ms"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def exchange(serve: ServeProcess, home: Path) -> str:
    """One good response (returns its correlation id), one forged, one invalid."""
    info = await serve.wait_session()
    await serve.initialize()
    secret = (home / "secret").read_text().strip()
    cid = "0b7c7f0e-6a0d-4b53-9d1c-2f4f7d3f2a11"
    async with httpx.AsyncClient() as client:
        raw = encode(body(id="log:1", correlation_id=cid))
        assert (
            await client.post(info.webhook_url, content=raw, headers=sign(secret, "log:1", raw))
        ).status_code == 200
        forged = await client.post(info.webhook_url, content=raw, headers=sign("whsec_AAAA", "log:1", raw))
        assert forged.status_code == 401
        bad = encode({"id": "log:2", "type": "message"})
        assert (
            await client.post(info.webhook_url, content=bad, headers=sign(secret, "log:2", bad))
        ).status_code == 422
    await serve.wait_channel(1)
    return cid


async def test_every_stderr_line_is_one_json_object_with_the_core_keys(home: Path) -> None:
    async with ServeProcess(home, "logs-a") as serve:
        with anyio.fail_after(20):
            cid = await exchange(serve, home)
    records = lines(serve.stderr_path)
    assert records, "serve logged nothing"
    for record in records:
        assert set(record) >= CORE, record
        if record["level"] in ("warning", "error"):
            assert record.get("reason"), record
    mine = [r for r in records if r["correlation_id"] == cid]
    assert [r["event"] for r in mine] == ["durable", "pushed"]  # "received" is a debug line
    assert all(r["response_id"] == "log:1" and r["session"] == "logs-a" and r["tier"] == 1 for r in mine)
    assert mine[-1]["latency_ms"] > 0
    rejected = [r for r in records if r["event"] == "rejected"]
    assert [r["status"] for r in rejected] == [401, 422]
    assert "signature" in rejected[0]["reason"]
    assert "'user' is a required property" in rejected[1]["reason"]
    assert serve.bad_lines == []


async def test_log_file_sends_the_lines_to_a_file_instead_of_stderr(home: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "serve.log"
    async with ServeProcess(home, "logs-b", args=["--log-file", str(log_file)]) as serve:
        with anyio.fail_after(20):
            cid = await exchange(serve, home)
    assert any(r["correlation_id"] == cid and r["event"] == "pushed" for r in lines(log_file))
    assert cid not in serve.stderr_path.read_text()
    assert serve.bad_lines == []
