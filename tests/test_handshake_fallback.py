"""serve steers a client that probes the 2026-07-28 revision back to the initialize handshake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_cascade.testing import ServeProcess

pytestmark = pytest.mark.anyio

# The first frame Claude Code 2.1.332 sends to a stdio server by default.
PROBE = {
    "jsonrpc": "2.0",
    "id": "server-discover-probe-1",
    "method": "server/discover",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "claude-code", "version": "2.1.332"},
            "io.modelcontextprotocol/clientCapabilities": {"roots": {"listChanged": True}},
        }
    },
}


async def test_a_discover_probe_is_refused_and_the_following_initialize_declares_the_channel(
    home: Path,
) -> None:
    async with ServeProcess(home, "probe-a") as serve:
        await serve.wait_session()
        await serve.send(PROBE)
        await serve.wait_for(lambda: any(f.get("id") == PROBE["id"] for f in serve.frames))
        (refusal,) = [f for f in serve.frames if f.get("id") == PROBE["id"]]
        assert refusal["error"]["code"] == -32601
        assert "server/discover" in refusal["error"]["message"]

        init = await serve.initialize()
        assert init["result"]["protocolVersion"] == "2025-11-25"
        assert init["result"]["capabilities"]["experimental"]["claude/channel"] == {}
        await serve.close_stdin()
        assert await serve.wait_exit() == 0
    logged = [json.loads(line) for line in serve.stderr_path.read_text().splitlines() if line.startswith("{")]
    (fallback,) = [e for e in logged if e["event"] == "handshake_fallback"]
    assert fallback["method"] == "server/discover"
    assert serve.bad_lines == []
