"""The harness's process base: a polite stop escalates to SIGKILL, and a child that dies says why."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mcp_cascade.testing import ChildProcess, ServeProcess, point_webhook_at, sidecar_address
from tests.cascade_helpers import write_session_json

pytestmark = pytest.mark.anyio

# Ignores SIGTERM, says it is ready on stderr, then waits to be killed.
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', file=sys.stderr, flush=True)\n"
    "time.sleep(60)\n"
)


class Scripted(ChildProcess):
    stop_grace_s = 0.3

    def __init__(self, tmp_path: Path, code: str) -> None:
        super().__init__(tmp_path / "child.stderr")
        self.code = code

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.code]


async def test_a_child_that_ignores_the_polite_stop_is_killed_after_its_grace(tmp_path: Path) -> None:
    child = Scripted(tmp_path, STUBBORN)
    await child.spawn(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    await child.wait_published(lambda: True if "up" in child.stderr_text() else None, "child", timeout=10)
    with anyio.fail_after(10):
        await child.stop()
    assert child.process is not None and child.process.returncode == -signal.SIGKILL
    assert not child.running


async def test_a_child_that_exits_before_publishing_raises_with_its_stderr(tmp_path: Path) -> None:
    child = Scripted(tmp_path, "import sys; sys.exit('cannot listen on 127.0.0.1:1: taken')")
    await child.spawn(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    with pytest.raises(RuntimeError, match=r"child exited 1: cannot listen on 127\.0\.0\.1:1: taken"):
        await child.wait_published(lambda: None, "child", timeout=10)


async def test_a_wait_that_times_out_says_what_it_waited_for_and_how_serve_s_stderr_ends(home: Path) -> None:
    async with ServeProcess(home, "harness-wait") as serve:
        await serve.initialize()
        with pytest.raises(TimeoutError) as caught:
            await serve.wait_channel(1, timeout=0.3)  # nothing is ever sent
    message = str(caught.value)
    assert message.startswith("serve (running) did not reach 1 notifications/claude/channel (has 0) in 0.3 s")
    assert '"component":"serve"' in message  # serve's own log lines, from its stderr


def test_routing_rewrites_only_the_webhook_url_of_the_discovery_file(home: Path) -> None:
    write_session_json(home, "r", 4242, "http://127.0.0.1:8123/webhook/bridge-response")
    assert sidecar_address(home, "r") == ("127.0.0.1", 8123)
    point_webhook_at(home, "r", "http://127.0.0.1:9999/webhook/bridge-response")
    assert sidecar_address(home, "r") == ("127.0.0.1", 9999)
    with pytest.raises(RuntimeError, match=r"no session\.json"):
        sidecar_address(home, "missing")
