"""Tier 4: a sender's publish → the frame on the remote session's stdout, through one nats-server.

    python -m benchmarks.nats_remote [--count 300] [--seconds 10] [--workers 16] [--json]

Two homes stand for two hosts (serve in B, the sender in A, the secret copied);
one local ``nats-server -js`` with file storage between them. In the same run,
the same sender delivers to a session in its own home through tier 1, the
local floor. Latency: one response at a time, from ``Sender.deliver`` to the
frame read from serve's stdout (one clock: both are in this process).
Throughput: ``--workers`` concurrent deliveries for ``--seconds``, counted as
frames at the remote session, from the first delivery until the frame of the
last one sent has arrived (sustained: the drain is part of the time). It is a
closed loop, as a bridge is: each delivery returns once the session's receipt
is back, so the rate is about ``workers`` divided by one delivery's time, and
more workers help until a process or the machine runs out of CPU. On a shared
machine that is the limit, so the phase also reports the CPU time each process
spent per response (the sender's includes this harness reading frames; Linux
only): a figure that other load moves much less than the rate. Consumer rate:
``--backlog`` signed messages published straight into the session's subject
(faster than it consumes), the rate from its first frame to its last: what one
session's consumer takes in, apart from the cost of the sender's side.
Targets: p99 ≤ 10 ms, ≥ 1,000 responses/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import nats
from nats.js import JetStreamContext

from benchmarks._common import HEADER, Stats, save
from mcp_cascade.config import load_config
from mcp_cascade.events import NullObserver
from mcp_cascade.remote.jetstream import JetStreamQueue
from mcp_cascade.remote.servers import NatsCluster
from mcp_cascade.response import make_response
from mcp_cascade.send.cascade import Sender
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.testing import ServeProcess

REMOTE, LOCAL = "bench-remote", "bench-local"


def _arrivals(serve: ServeProcess) -> dict[str, float]:
    return {n["params"]["meta"]["response_id"]: n["_received"] for n in serve.channel()}


async def _latencies(
    sender: Sender, serve: ServeProcess, session: str, prefix: str, count: int
) -> list[float]:
    took: list[float] = []
    for i in range(count):
        rid = f"{prefix}:{i}"
        start = time.perf_counter()
        await sender.deliver(make_response(type="message", user_id=7, text="bench", id=rid), session)
        with anyio.fail_after(10):
            while rid not in _arrivals(serve):  # noqa: ASYNC110 - frames are read by the harness's task
                await anyio.sleep(0.0002)
        took.append((_arrivals(serve)[rid] - start) * 1000)
    return took


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _throughput(
    sender: Sender, serve: ServeProcess, nats_pid: int, seconds: float, workers: int
) -> tuple[float, dict[str, float]]:
    before = len(serve.channel())
    sent = 0
    assert serve.process is not None
    pids = {"sender": os.getpid(), "serve": serve.process.pid, "nats-server": nats_pid}
    cpu_before = {name: _cpu_s(pid) for name, pid in pids.items()}

    async def worker(w: int) -> None:
        nonlocal sent
        n = 0
        while True:
            rid = f"tp:{w}:{n}"
            n += 1
            await sender.deliver(make_response(type="message", user_id=7, text="bench", id=rid), REMOTE)
            sent += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(workers):
            tg.start_soon(worker, w)
        await anyio.sleep(seconds)
        tg.cancel_scope.cancel()
    with anyio.move_on_after(30):
        while len(serve.channel()) - before < sent:  # noqa: ASYNC110 - frames are read by the harness's task
            await anyio.sleep(0.01)
    arrived = len(serve.channel()) - before
    cpu_ms = {name: (_cpu_s(pid) - cpu_before[name]) * 1000 / arrived for name, pid in pids.items()}
    return arrived / (time.perf_counter() - start), cpu_ms


async def _consumer_rate(js: JetStreamContext, signer: Signer, serve: ServeProcess, count: int) -> float:
    before = len(serve.channel())
    queue = JetStreamQueue(js, REMOTE, signer)

    async def publisher(first: int) -> None:
        for i in range(first, count, 32):
            await queue.enqueue(make_response(type="message", user_id=7, text="bench", id=f"bl:{i}"), 5)

    async with anyio.create_task_group() as tg:
        for first in range(32):
            tg.start_soon(publisher, first)
    with anyio.fail_after(120):
        while len(serve.channel()) - before < count:  # noqa: ASYNC110 - frames are read by the harness's task
            await anyio.sleep(0.01)
    frames = serve.channel()[before:]
    span: float = frames[-1]["_received"] - frames[0]["_received"]
    return (count - 1) / span


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()  # the machine may be shared: what else ran shows here
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        root = Path(tmp)
        home_a, home_b = root / "a", root / "b"
        for home in (home_a, home_b):
            home.mkdir(mode=0o700)
        load_or_create_secret(home_a)
        shutil.copy2(home_a / "secret", home_b / "secret")
        with NatsCluster(root / "nats") as server:
            env = {"MCP_CASCADE_NATS_URL": server.url, "MCP_CASCADE_LOG_LEVEL": "warning"}
            loaded = load_config(home_a, env)
            async with (
                ServeProcess(home_b, REMOTE, env=env) as remote,
                ServeProcess(home_a, LOCAL, env={"MCP_CASCADE_LOG_LEVEL": "warning"}) as local,
            ):
                for serve in (remote, local):
                    await serve.wait_session()
                    await serve.initialize()
                async with Sender(home_a, loaded.config, NullObserver()) as sender:
                    assert sender.remote is not None
                    with anyio.fail_after(30):
                        while (await sender.remote.place(REMOTE))[0] != "remote":  # noqa: ASYNC110
                            await anyio.sleep(0.05)
                    await _latencies(sender, remote, REMOTE, "warm-r", 20)
                    await _latencies(sender, local, LOCAL, "warm-l", 20)
                    tier4 = Stats.of(await _latencies(sender, remote, REMOTE, "r", args.count))
                    tier1 = Stats.of(await _latencies(sender, local, LOCAL, "l", args.count))
                    nats_process = server.nodes[0].process
                    assert nats_process is not None
                    rate, cpu_ms = await _throughput(
                        sender, remote, nats_process.pid, args.seconds, args.workers
                    )
                nc = await nats.connect(server.url)
                try:
                    signer = Signer(load_or_create_secret(home_a))
                    consumer = await _consumer_rate(nc.jetstream(), signer, remote, args.backlog)
                finally:
                    await nc.close()
    return {
        "tier4_remote": tier4,
        "tier1_local": tier1,
        "remote_rate_per_s": rate,
        "cpu_ms_per_response": cpu_ms,
        "consumer_rate_per_s": consumer,
        "args": vars(args),
        "command": "python -m benchmarks.nats_remote " + " ".join(sys.argv[1:]),
        "load_average_at_start": load,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=300, help="sequential deliveries per tier")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput phase")
    parser.add_argument(
        "--workers", type=int, default=16, help="concurrent deliveries in the throughput phase"
    )
    parser.add_argument(
        "--backlog", type=int, default=3000, help="messages published at once for the consumer rate"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    result = anyio.run(run, args)
    tier4: Stats = result["tier4_remote"]
    tier1: Stats = result["tier1_local"]
    save("nats_remote", {k: (asdict(v) if isinstance(v, Stats) else v) for k, v in result.items()})
    if args.json:
        print(
            json.dumps(
                {k: (asdict(v) if isinstance(v, Stats) else v) for k, v in result.items()}, default=str
            )
        )
        return 0
    print(HEADER)
    print(f"{'tier 4: publish → frame (remote, NATS)':<44}{tier4.row()}")
    print(f"{'tier 1 floor: POST → frame (local)':<44}{tier1.row()}")
    print(
        f"remote throughput: {result['remote_rate_per_s']:.0f} responses/s ({args.workers} senders at once)"
    )
    print(
        "CPU per response: "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in result["cpu_ms_per_response"].items())
    )
    print(
        f"one session's consumer: {result['consumer_rate_per_s']:.0f} responses/s "
        f"(a backlog of {args.backlog} published straight into its subject)"
    )
    print(f"targets: p99 ≤ 10 ms ({'met' if tier4.p99 <= 10 else 'NOT met'}), ", end="")
    print(f"≥ 1000/s end to end ({'met' if result['remote_rate_per_s'] >= 1000 else 'NOT met'}), ", end="")
    print(f"by the consumer ({'met' if result['consumer_rate_per_s'] >= 1000 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
