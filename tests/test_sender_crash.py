"""A sender killed with SIGKILL mid-stream, then restarted: nothing lost, nothing seen twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from mcp_cascade.send.outbox import Outbox
from mcp_cascade.testing import ServeProcess, point_webhook_at
from mcp_cascade.testing.faults import Fault, FaultProxy
from tests.cascade_helpers import seen

pytestmark = pytest.mark.anyio
REPO = str(Path(__file__).resolve().parent.parent)
ENV = dict(os.environ)


async def stream_sender(home: Path, session: str, ids: list[str], *extra: str) -> list[str]:
    """Run the sender on ``ids`` to completion; the receipt lines it printed."""
    command = [sys.executable, "-m", "tests.sender_stream", str(home), session, *extra]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, input="\n".join(ids).encode(), env=ENV, cwd=REPO)
    return done.stdout.decode().splitlines()


async def test_a_sender_killed_mid_stream_loses_nothing_and_duplicates_nothing(home: Path) -> None:
    ids = [f"k:{n}" for n in range(120)]
    async with ServeProcess(home, "crash-s") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        host, port = info.webhook_url.split("//")[1].split("/")[0].split(":")
        async with FaultProxy(host, int(port)) as proxy:
            # Each answer takes 40 ms (under the 100 ms budget): several are in flight at any moment.
            proxy.set(Fault.LATENCY, latency_s=0.04)
            point_webhook_at(home, "crash-s", proxy.url("/webhook/bridge-response"))
            process = await anyio.open_process(
                [sys.executable, "-m", "tests.sender_stream", str(home), "crash-s", "--concurrency", "8"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=ENV,
                cwd=REPO,
            )
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send(("\n".join(ids) + "\n").encode())
            await process.stdin.aclose()
            told: list[str] = []  # receipts the killed sender's caller saw
            buffer = ""
            with anyio.fail_after(60):
                async for chunk in TextReceiveStream(process.stdout):
                    buffer += chunk
                    *lines, buffer = buffer.split("\n")
                    told += [line.split()[0] for line in lines if line]
                    if len(told) >= 40:
                        break
                # Killed while an entry is in the outbox: frozen first (SIGSTOP), so the look at the outbox
                # and the kill see the same moment; entries written together become pending together, and
                # on a busy machine a blind kill could fall between two batches.
                while True:
                    assert process.returncode is None, "the sender finished before the kill"
                    process.send_signal(signal.SIGSTOP)
                    if Outbox(home / "outbox").names():
                        process.send_signal(signal.SIGKILL)
                        break
                    process.send_signal(signal.SIGCONT)
                    await anyio.sleep(0.002)
                await process.wait()
            assert process.returncode == -signal.SIGKILL
            in_outbox = {e.response.id for e in Outbox(home / "outbox").entries()}
            assert in_outbox, "the kill should catch responses in flight"
            assert not in_outbox & set(told)

            # Restarted, the sender re-drives its outbox on its own: every entry reaches the session.
            redriven = await stream_sender(home, "crash-s", [], "--redrive")
            assert {line.split()[0] for line in redriven} == in_outbox
            assert all(line.split()[1] in ("delivered", "queued") for line in redriven)
            await serve.wait_for(lambda: in_outbox <= set(seen(serve)))
            assert list(Outbox(home / "outbox").entries()) == []

            # The caller resends what it was never told about, as a bridge whose update was not acknowledged.
            untold = [rid for rid in ids if rid not in told]
            again = await stream_sender(home, "crash-s", untold, "--concurrency", "8")
            assert sorted(line.split()[0] for line in again) == sorted(untold)
            await serve.wait_for(lambda: len(seen(serve)) == len(ids), timeout=30)
        assert seen(serve) == dict.fromkeys(ids, 1)
        assert all("redelivered" not in n["params"]["meta"] for n in serve.channel())
    assert serve.bad_lines == []
