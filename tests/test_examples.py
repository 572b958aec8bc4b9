"""Every runnable example does what its docstring says, against a real serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mcp_cascade.cli import build_parser
from mcp_cascade.testing import ServeProcess

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "MCP_CASCADE_HOME": str(home)}


async def _run(cmd: list[str], home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, env=_env(home))

    return await anyio.to_thread.run_sync(run)


async def test_the_shell_example_signs_with_openssl_and_delivers(home: Path) -> None:
    async with ServeProcess(home, "shell") as serve:
        await serve.wait_session()
        await serve.initialize()
        done = await _run(["bash", str(EXAMPLES / "post_response.sh"), "shell", "from the shell"], home)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "delivered"
        (note,) = await serve.wait_channel(1)
        assert note["params"]["content"] == "from the shell"


async def test_the_python_post_example_delivers(home: Path) -> None:
    async with ServeProcess(home, "py") as serve:
        await serve.wait_session()
        await serve.initialize()
        done = await _run([sys.executable, str(EXAMPLES / "post_response.py"), "py", "from python"], home)
        assert done.returncode == 0, done.stderr
        (note,) = await serve.wait_channel(1)
        assert note["params"]["content"] == "from python"


async def test_the_custom_bridge_delivers_live_and_queues_for_a_closed_session(home: Path) -> None:
    bridge = [sys.executable, str(EXAMPLES / "custom_bridge.py"), "custom"]
    closed = await _run(bridge, home, stdin="while you were away\n")
    assert closed.returncode == 0, closed.stderr
    assert json.loads(closed.stdout)["tier"] == 3
    assert "queued for custom" in closed.stderr
    async with ServeProcess(home, "custom") as serve:
        await serve.wait_session()
        await serve.initialize()
        await serve.wait_channel(1)
        live = await _run(bridge, home, stdin="first\nsecond\n")
        assert live.returncode == 0, live.stderr
        receipts = [json.loads(line) for line in live.stdout.splitlines()]
        assert [(r["status"], r["tier"]) for r in receipts] == [("delivered", 1), ("delivered", 1)]
        notes = await serve.wait_channel(3)
    assert [n["params"]["content"] for n in notes] == ["while you were away", "first", "second"]


def test_the_claude_code_config_runs_serve() -> None:
    config = json.loads((EXAMPLES.parent / "claude_config.json").read_text())
    entry = config["mcpServers"]["mcp-cascade"]
    assert entry == {"command": "mcp-cascade", "args": ["serve"]}
    plugin_mcp = json.loads((EXAMPLES.parent / ".mcp.json").read_text())
    assert plugin_mcp == config
    plugin = json.loads((EXAMPLES.parent / ".claude-plugin" / "plugin.json").read_text())
    assert plugin["name"] == "mcp-cascade"


def test_the_systemd_unit_starts_the_bridge_command_and_reloads_with_sighup() -> None:
    unit = (EXAMPLES / "systemd" / "mcp-cascade-bridge.service").read_text()
    fields = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    command = fields["ExecStart"].split()
    assert command[0].endswith("/mcp-cascade")
    args = build_parser().parse_args(command[1:])
    assert args.command == "bridge"
    assert fields["ExecReload"] == "/bin/kill -HUP $MAINPID"  # LiveConfig reloads config.toml on SIGHUP
    assert fields["Restart"] == "on-failure"
    assert fields["WantedBy"] == "default.target"
