"""A shell bridge runs ``mcp-cascade send`` once per answer: it loads only what sending needs.

Each check runs the command in a fresh interpreter (``main()`` in-process there, so the
interpreter can report what it imported) and lists the heavy libraries it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mcp_cascade.testing import ServeProcess

pytestmark = pytest.mark.anyio

# The MCP SDK, the Telegram library, metrics and their exporter, the web stack, the pooled HTTP client
# (with trio and its command-line extras), the reference schema validator and the NATS client.
HEAVY = (
    "click",
    "httpcore",
    "httpx",
    "jsonschema",
    "mcp",
    "nats",
    "opentelemetry",
    "prometheus_client",
    "rich",
    "starlette",
    "telegram",
    "trio",
    "uvicorn",
)

PROBE = """
import json, sys
from mcp_cascade.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


async def loaded_by(home: Path, *argv: str) -> set[str]:
    """The top-level packages ``mcp-cascade argv`` imported, checking that it succeeded."""
    env = {**os.environ, "MCP_CASCADE_HOME": str(home)}
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", PROBE, *argv], env=env, check=False)
    report = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert report["code"] in (0, None), subprocess.list2cmdline(argv) + "\n" + done.stderr.decode()
    return set(report["loaded"])


async def test_help_loads_no_heavy_library_and_not_pydantic(home: Path) -> None:
    assert (await loaded_by(home, "--help")) & {*HEAVY, "pydantic"} == set()


async def test_send_to_a_session_not_running_loads_no_heavy_library(home: Path) -> None:
    assert (await loaded_by(home, "send", "--session", "away", "--text", "later")) & set(HEAVY) == set()
    assert len(list((home / "sessions" / "away" / "inbox" / "new").iterdir())) == 1


async def test_send_through_tier_1_loads_no_heavy_library(home: Path) -> None:
    async with ServeProcess(home, "here") as serve:
        await serve.wait_session()
        await serve.initialize()
        loaded = await loaded_by(home, "send", "--session", "here", "--text", "now", "--id", "imports:1")
        (note,) = await serve.wait_channel(1)
    assert loaded & set(HEAVY) == set()
    assert note["params"]["content"] == "now"
    assert note["params"]["meta"]["tier"] == "1"
