"""The sidecar listens beyond loopback only when told so by name, says so, and then shows no paths or pids."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mcp_cascade.config import is_loopback
from mcp_cascade.testing import ServeProcess
from tests.test_serve_startup import _run

pytestmark = pytest.mark.anyio


def test_a_non_loopback_sidecar_host_without_the_opt_in_is_refused_naming_the_key(home: Path) -> None:
    """Finding 5: MCP_CASCADE_SIDECAR_HOST=0.0.0.0 used to be bound without a word."""
    result = _run([], home, env={"MCP_CASCADE_SIDECAR_HOST": "0.0.0.0"})
    assert result.returncode == 2 and result.stdout == ""
    assert "listen_beyond_loopback" in result.stderr and "0.0.0.0" in result.stderr


def test_loopback_means_addresses_that_stay_on_this_machine() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org", ""))


async def test_opted_in_it_warns_at_start_and_health_shows_no_paths_or_pids(
    home: Path, tmp_path: Path
) -> None:
    env = {"MCP_CASCADE_SIDECAR_HOST": "0.0.0.0", "MCP_CASCADE_LISTEN_BEYOND_LOOPBACK": "true"}
    stderr = tmp_path / "serve.stderr"
    async with ServeProcess(home, "wide", env=env, stderr_path=stderr) as serve:
        info = await serve.wait_session()
        await serve.initialize()
        port = httpx.URL(info.health_url).port
        async with httpx.AsyncClient(timeout=10) as client:
            bodies = [
                (await client.get(f"http://127.0.0.1:{port}{path}")).json()
                for path in ("/health", "/health/webhook", "/health/file")
            ]
        status = json.loads((await serve.call_tool("cascade_status", {}))["content"][0]["text"])
    text = json.dumps(bodies)
    assert bodies[0]["status"] in ("ok", "degraded") and set(bodies[0]["tiers"]) == {"webhook", "file"}
    assert "pid" not in text and str(home) not in text and "http://" not in text
    assert status["pid"] > 0 and str(home) in json.dumps(status)  # the local tool keeps the details
    assert "listening_beyond_loopback" in stderr.read_text()
