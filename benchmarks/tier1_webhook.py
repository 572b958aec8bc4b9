"""Tier 1: signed POST → notification frame read from serve's stdout.

    python -m benchmarks.tier1_webhook [--rate 100] [--seconds 20] [--max-seconds 10] [--json]

Open-loop at a constant rate (latency measured from each request's scheduled
send time, so a stall cannot hide behind the requests it delayed), then
closed-loop with many workers (bodies signed beforehand) for the maximum
sustainable rate; every delivery counted is durable before its 2xx. Two floors are
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import (
    HEADER,
    Pool,
    Stats,
    bare_http_floor,
    bare_responder_process,
    cpu_seconds,
    durable_write_floor,
    save,
)
from benchmarks._report import Target, Tick, cdf_svg, progress, verdicts
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


async def open_loop(
    serve: ServeProcess, pool: Pool, path: str, signer: Signer, prefix: str, rate: float, seconds: float
) -> tuple[Stats, Stats, int, list[float]]:
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
    send_samples = [(arrived[r] - t) * 1000 for r, t in sent.items()]
    return from_schedule, Stats.of(send_samples), errors, send_samples


async def closed_loop(
    serve: ServeProcess,
    pool: Pool,
    path: str,
    signer: Signer,
    workers: int,
    seconds: float,
    tick: Tick = lambda advance=1: None,
    prefix: str = "max",
) -> tuple[float, Stats, list[float], float]:
    """As fast as ``workers`` sequential senders go: deliveries per second, their latency, and
    serve's CPU time per delivery (ms)."""
    assert serve.process is not None
    cpu = cpu_seconds(serve.process.pid)
    prepared = [_signed(signer, f"{prefix}:{i}") for i in range(int(seconds * 5000))]
    sent: dict[str, float] = {}
    deadline = time.perf_counter() + seconds
    feed = iter(enumerate(prepared))

    async def worker() -> None:
        for i, (body, headers) in feed:
            now = time.perf_counter()
            if now >= deadline:
                return
            sent[f"{prefix}:{i}"] = now
            await pool.pick().post(path, body, headers)
            if i % 100 == 0:
                tick(0.1)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    expected = len(serve.notifications) - _count(serve, prefix) + len(sent)
    await serve.wait_for(lambda: len(serve.notifications) >= expected, timeout=60)
    arrived = _arrivals(serve)
    elapsed = max(arrived[r] for r in sent) - began
    samples = [(arrived[r] - t) * 1000 for r, t in sent.items()]
    cpu_ms = (cpu_seconds(serve.process.pid) - cpu) * 1000 / len(sent)
    return len(sent) / elapsed, Stats.of(samples), samples, cpu_ms


@dataclass(frozen=True, slots=True)
class Floor:
    """The same client and workers against a minimal asyncio responder in a process of its own."""

    per_s: float  # requests per second
    cpu_ms: float  # the responder's CPU time per request


async def floor_throughput(workers: int, seconds: float = 1.0) -> Floor:
    async with bare_responder_process(b"202 Accepted") as responder:
        pool = await Pool.open(responder.url, workers)
        cpu = cpu_seconds(responder.pid)
        rate = await _throughput(pool, workers, seconds)
        return Floor(rate, (cpu_seconds(responder.pid) - cpu) * 1000 / (rate * seconds))


async def _throughput(pool: Pool, workers: int, seconds: float) -> float:
    body = b'{"x":"' + b"y" * 400 + b'"}'
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await pool.pick().post("/", body, {"content-type": "application/json"})
            done += 1

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    pool.close()
    return done / seconds


async def run(args: argparse.Namespace) -> dict[str, Any]:
    total = 1 + args.seconds + args.max_seconds + 1
    with (
        tempfile.TemporaryDirectory(prefix="mcp-cascade-bench-", dir=args.dir) as tmp,
        progress("tier 1", total, plain=args.json) as tick,
    ):
        home = Path(tmp, "home")
        http_samples = await bare_http_floor()
        disk_samples = durable_write_floor(home / "floor")
        http_floor, disk_floor = Stats.of(http_samples), Stats.of(disk_samples)
        floor = await floor_throughput(args.connections)
        tick()
        serve_args = ["--metrics", "false"] if args.no_metrics else []
        async with ServeProcess(home, "bench", args=serve_args) as serve:
            info = await serve.wait_session()
            await serve.initialize()
            signer = Signer((home / "secret").read_text().strip())
            path = "/" + info.webhook_url.split("/", 3)[3]
            pool = await Pool.open(info.webhook_url, args.connections)
            await open_loop(serve, pool, path, signer, "warm", 200, 1)
            steady, service, errors, service_samples = await open_loop(
                serve, pool, path, signer, "steady", args.rate, args.seconds
            )
            tick(args.seconds)
            throughput, saturated, saturated_samples, cpu_ms = await closed_loop(
                serve, pool, path, signer, args.connections, args.max_seconds, tick
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
    print(
        f"\nsustained: {throughput:,.0f} durable deliveries/s; errors at {args.rate:g}/s: {errors};"
        f" floor: the same client against a bare asyncio responder, {floor.per_s:,.0f} requests/s"
        f"\nCPU per delivery: serve {cpu_ms:.3f} ms; the bare responder {floor.cpu_ms:.3f} ms per request"
    )
    targets = verdicts(
        [
            Target(
                f"p50 at {args.rate:g}/s ≤ 3× the floors' sum", service.p50, 3 * floor_sum, floor=floor_sum
            ),
            Target(f"p99 at {args.rate:g}/s", steady.p99, 5.0, floor=http_floor.p99 + disk_floor.p99),
            Target(
                "sustained durable deliveries",
                throughput,
                3000,
                unit="/s",
                at_least=True,
                floor=floor.per_s,
            ),
        ]
    )
    picture = cdf_svg(
        "tier1" + ("-no-metrics" if args.no_metrics else ""),
        "Tier 1: signed POST → notification on serve's stdout",
        {
            "floor: bare loopback HTTP": http_samples,
            "floor: durable write": disk_samples,
            f"serve, open loop {args.rate:g}/s (from send)": service_samples,
            f"serve, closed loop {args.connections} senders": saturated_samples,
        },
    )
    result = {
        "floors": {
            "http": _d(http_floor),
            "durable_write": _d(disk_floor),
            "bare_responder_per_s": floor.per_s,
            "bare_responder_cpu_ms": floor.cpu_ms,
        },
        "open_loop": {"rate": args.rate, "seconds": args.seconds, **_d(steady), "errors": errors},
        "open_loop_from_send": _d(service),
        "closed_loop": {
            "connections": args.connections,
            "throughput_per_s": throughput,
            "cpu_ms_per_delivery": cpu_ms,
            **_d(saturated),
        },
        "metrics": not args.no_metrics,
        "targets": targets,
        "picture": picture.name if picture else None,
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
    parser.add_argument("--json", action="store_true", help="no progress bar; print the results as JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
