"""Tier 1: signed POST → notification frame read from serve's stdout.

    python -m benchmarks.tier1_webhook [--rate 100] [--seconds 20] [--max-seconds 10]

Open-loop at a constant rate (latency measured from each request's scheduled
send time, so a stall cannot hide behind the requests it delayed), then
closed-loop with many workers for the maximum sustainable rate. Two floors are
measured in the same run: a bare loopback HTTP round trip with the same client,
and write+fsync+rename+fsync on the same disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import HEADER, Pool, Stats, bare_http_floor, durable_write_floor, save
from mcp_cascade.response import make_response
from mcp_cascade.signing import Signer
from mcp_cascade.testing import ServeProcess
from mcp_cascade.wire import webhook_request


def _arrivals(serve: ServeProcess) -> dict[str, float]:
    return {n["params"]["meta"]["response_id"]: n["_received"] for n in serve.channel()}


def _count(serve: ServeProcess, prefix: str) -> int:
    return sum(1 for n in serve.notifications if n["params"]["meta"]["response_id"].startswith(prefix + ":"))


def _signed(signer: Signer, rid: str) -> tuple[bytes, dict[str, str]]:
    return webhook_request(
        signer, make_response(type="message", user_id=7, text="benchmark answer " + rid, id=rid)
    )


async def _post(pool: Pool, path: str, signer: Signer, rid: str) -> int:
    body, headers = _signed(signer, rid)
    status, _ = await pool.pick().post(path, body, headers)
    return status


async def open_loop(
    serve: ServeProcess, pool: Pool, path: str, signer: Signer, prefix: str, rate: float, seconds: float
) -> tuple[Stats, Stats, int]:
    """Send at ``rate`` per second for ``seconds``.

    Returns latency to the notification from each request's scheduled time (free of
    coordinated omission: a stall counts for every request it delays) and from the
    moment it was actually written (the server's service time, comparable with the floors).
    """
    count = int(rate * seconds)
    prepared = [(f"{prefix}:{i}", *_signed(signer, f"{prefix}:{i}")) for i in range(count)]
    scheduled: dict[str, float] = {}
    sent: dict[str, float] = {}
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(rid: str, body: bytes, headers: dict[str, str]) -> None:
        nonlocal errors
        sent[rid] = time.perf_counter()
        status, _ = await pool.pick().post(path, body, headers)
        if status not in (200, 202):
            errors += 1

    async with anyio.create_task_group() as tg:
        for i, (rid, body, headers) in enumerate(prepared):
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled[rid] = at
            tg.start_soon(one, rid, body, headers)
    expected = len(serve.notifications) - _count(serve, prefix) + len(scheduled)
    await serve.wait_for(lambda: len(serve.notifications) >= expected, timeout=60)
    arrived = _arrivals(serve)
    from_schedule = Stats.of([(arrived[r] - t) * 1000 for r, t in scheduled.items()])
    from_send = Stats.of([(arrived[r] - t) * 1000 for r, t in sent.items()])
    return from_schedule, from_send, errors


async def closed_loop(
    serve: ServeProcess, pool: Pool, path: str, signer: Signer, workers: int, seconds: float
) -> tuple[float, Stats]:
    """As fast as ``workers`` sequential senders go: deliveries per second, and their latency."""
    sent: dict[str, float] = {}
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            rid = f"max:{w}:{n}"
            n += 1
            sent[rid] = time.perf_counter()
            await _post(pool, path, signer, rid)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(workers):
            tg.start_soon(worker, w)
    expected = len(serve.notifications) - _count(serve, "max") + len(sent)
    await serve.wait_for(lambda: len(serve.notifications) >= expected, timeout=60)
    arrived = _arrivals(serve)
    elapsed = max(arrived[r] for r in sent) - began
    return len(sent) / elapsed, Stats.of([(arrived[r] - t) * 1000 for r, t in sent.items()])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mcp-cascade-bench-", dir=args.dir) as tmp:
        home = Path(tmp, "home")
        http_floor = Stats.of(await bare_http_floor())
        disk_floor = Stats.of(durable_write_floor(home / "floor"))
        serve_args = ["--metrics", "false"] if args.no_metrics else []
        async with ServeProcess(home, "bench", args=serve_args) as serve:
            info = await serve.wait_session()
            await serve.initialize()
            signer = Signer((home / "secret").read_text().strip())
            path = "/" + info.webhook_url.split("/", 3)[3]
            pool = await Pool.open(info.webhook_url, args.connections)
            await open_loop(serve, pool, path, signer, "warm", 200, 1)
            steady, service, errors = await open_loop(
                serve, pool, path, signer, "steady", args.rate, args.seconds
            )
            throughput, saturated = await closed_loop(
                serve, pool, path, signer, args.connections, args.max_seconds
            )
            pool.close()
            assert serve.bad_lines == [], serve.bad_lines[:3]
    floor_sum = http_floor.p50 + disk_floor.p50
    print("Tier 1: signed POST → channel notification frame on serve's stdout")
    print(HEADER)
    print(f"{'floor: bare loopback HTTP round trip':<44}{http_floor.row()}")
    print(f"{'floor: write+fsync+rename+fsync':<44}{disk_floor.row()}")
    print(f"{f'open loop {args.rate:g}/s for {args.seconds:g} s, from schedule':<44}{steady.row()}")
    print(f"{'  the same, from the actual send':<44}{service.row()}")
    print(f"{f'closed loop, {args.connections} senders':<44}{saturated.row()}")
    print(f"\nsustained: {throughput:,.0f} durable deliveries/s; errors at {args.rate:g}/s: {errors}")
    checks = {
        f"p99 at {args.rate:g}/s <= 10 ms": steady.p99 <= 10,
        ">= 1,000 durable deliveries/s": throughput >= 1000,
        f"p50 <= 3 x floors ({3 * floor_sum:.3f} ms)": service.p50 <= 3 * floor_sum,
    }
    for name, ok in checks.items():
        print(f"  {'met ' if ok else 'MISSED'}  {name}")
    result = {
        "floors": {"http": _d(http_floor), "durable_write": _d(disk_floor)},
        "open_loop": {"rate": args.rate, "seconds": args.seconds, **_d(steady), "errors": errors},
        "open_loop_from_send": _d(service),
        "closed_loop": {"connections": args.connections, "throughput_per_s": throughput, **_d(saturated)},
        "metrics": not args.no_metrics,
        "targets": checks,
    }
    saved = save("tier1" + ("-no-metrics" if args.no_metrics else ""), result)
    print(f"\nresults: {saved}")
    return result


def _d(stats: Stats) -> dict[str, float]:
    return {
        "n": stats.n,
        "p50_ms": stats.p50,
        "p99_ms": stats.p99,
        "p999_ms": stats.p999,
        "max_ms": stats.max,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--max-seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-metrics", action="store_true", help="run serve with metrics = false")
    parser.add_argument("--dir", help="where the temporary home goes (the disk under test)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
