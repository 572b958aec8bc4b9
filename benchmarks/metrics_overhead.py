"""What recording metrics costs on the hot path: signed POST → channel notification, metrics off vs on.

    python -m benchmarks.metrics_overhead [--n 1000] [--warmup 100]

Two serve subprocesses in one home, one started with ``--metrics false`` and
one with ``--metrics true``, each with an MCP client attached. Requests go one
at a time and alternate between the two, so both see the same machine noise.
Each sample is the time from just before the POST to the arrival of its
``notifications/claude/channel`` frame on serve's stdout. Floors measured in
the same run: a bare loopback HTTP round trip with the same client, and
write+fsync+rename+fsync on the same disk. A second table gives the in-process
cost of the telemetry of one response (its events through the observer).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import HEADER, HttpConnection, Stats, bare_http_floor, durable_write_floor, save
from mcp_cascade.events import Event
from mcp_cascade.ops.telemetry import JsonLog, Metrics, Telemetry
from mcp_cascade.response import make_response
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.testing import ServeProcess
from mcp_cascade.wire import webhook_request


async def round_trip(serve: ServeProcess, conn: HttpConnection, path: str, signer: Signer, rid: str) -> float:
    """Milliseconds from the POST to its channel notification."""
    body, headers = webhook_request(
        signer, make_response(type="message", user_id=7, text="benchmark answer", id=rid)
    )
    before = len(serve.channel())
    start = time.perf_counter()
    status, payload = await conn.post(path, body, headers)
    if status != 200:
        raise RuntimeError(f"POST answered {status}: {payload[:200]!r}")
    notes = await serve.wait_channel(before + 1)
    received: float = notes[before]["_received"]
    return (received - start) * 1000


async def hot_path(home: Path, n: int, warmup: int) -> dict[str, Stats]:
    """Alternate single POSTs between a serve without metrics and one with them."""
    serves = {
        "off": ServeProcess(home, "metrics-off", args=["--metrics", "false"]),
        "on": ServeProcess(home, "metrics-on", args=["--metrics", "true"]),
    }
    samples: dict[str, list[float]] = {"off": [], "on": []}
    async with serves["off"], serves["on"]:
        conns: dict[str, tuple[HttpConnection, str]] = {}
        for key, serve in serves.items():
            info = await serve.wait_session()
            await serve.initialize()
            conns[key] = (
                await HttpConnection.open(info.webhook_url),
                "/" + info.webhook_url.split("/", 3)[3],
            )
        signer = Signer(load_or_create_secret(home))
        for i in range(warmup + n):
            for key in ("off", "on") if i % 2 else ("on", "off"):
                conn, path = conns[key]
                took = await round_trip(serves[key], conn, path, signer, f"{key}:{i}")
                if i >= warmup:
                    samples[key].append(took)
        for conn, _ in conns.values():
            conn.close()
        for serve in serves.values():
            assert serve.bad_lines == [], serve.bad_lines[:3]
    return {key: Stats.of(values) for key, values in samples.items()}


def telemetry_cost(n: int) -> dict[str, Stats]:
    """The events of one tier-1 response through Telemetry (logs to memory at info, no audit), in µs."""
    events = [
        Event("received", tier=1, response_id="r", correlation_id="c", session="s", level="debug"),
        Event("durable", tier=1, response_id="r", correlation_id="c", session="s", latency_ms=0.2),
        Event("pushed", tier=1, response_id="r", correlation_id="c", session="s", latency_ms=0.5),
        Event(
            "http_request",
            latency_ms=0.6,
            level="debug",
            fields={"method": "POST", "route": "/webhook/bridge-response", "status": 200},
        ),
    ]
    out: dict[str, Stats] = {}
    for key, metrics in (("off", None), ("on", Metrics())):
        telemetry = Telemetry(log=JsonLog(io.StringIO(), "info"), audit=None, metrics=metrics)
        timings = []
        for _ in range(n):
            start = time.perf_counter()
            for event in events:
                telemetry.emit(event)
            timings.append((time.perf_counter() - start) * 1e6)
        telemetry.close()
        out[key] = Stats.of(timings)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure, print, save."""
    with tempfile.TemporaryDirectory(prefix="mcp-cascade-bench-", dir=args.dir) as tmp:
        home = Path(tmp, "home")
        http_floor = Stats.of(await bare_http_floor())
        disk_floor = Stats.of(durable_write_floor(home / "floor"))
        served = await hot_path(home, args.n, args.warmup)
    in_process = telemetry_cost(20_000)
    print("Signed POST → channel notification, one at a time, metrics off and on alternating")
    print(HEADER)
    print(f"{'floor: bare loopback HTTP round trip':<44}{http_floor.row()}")
    print(f"{'floor: write+fsync+rename+fsync':<44}{disk_floor.row()}")
    print(f"{'serve --metrics false':<44}{served['off'].row()}")
    print(f"{'serve --metrics true':<44}{served['on'].row()}")
    delta_us = (served["on"].p50 - served["off"].p50) * 1000
    print(f"\ndifference of medians (on - off): {delta_us:+.0f} µs")
    print("\nTelemetry of one response in process (µs)")
    print(f"{'':<44}{'n':>7} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9} {'max µs':>9}")
    print(f"{'metrics off (log lines only)':<44}{in_process['off'].row()}")
    print(f"{'metrics on':<44}{in_process['on'].row()}")
    result = {
        "floors": {"http": _d(http_floor), "durable_write": _d(disk_floor)},
        "post_to_notification_ms": {"metrics_off": _d(served["off"]), "metrics_on": _d(served["on"])},
        "difference_of_medians_us": delta_us,
        "telemetry_per_response_us": {
            "metrics_off": _d(in_process["off"]),
            "metrics_on": _d(in_process["on"]),
        },
    }
    print(f"\nresults: {save('metrics_overhead', result)}")
    return result


def _d(stats: Stats) -> dict[str, float]:
    return {"n": stats.n, "p50": stats.p50, "p99": stats.p99, "p999": stats.p999, "max": stats.max}


def main() -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1000, help="measured round trips per configuration")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--dir", help="where the temporary home goes (the disk under test)")
    args = parser.parse_args()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
