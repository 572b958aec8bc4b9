"""Failover: time from a sender's delivery call to the notification on serve's stdout when tier 1 is down.

    python -m benchmarks.failover [--n 20] [--floor-n 200] [--json]

Scenarios, each against a real ``serve`` whose session.json is pointed at a
broken webhook (its process stays alive, so the sender does try tier 1):

- tier 1 healthy: the floor of the whole path (outbox write, signed POST, push);
- connection refused: nobody listens, so the inbox (tier 3) at once;
- SIGSTOPped listener: the kernel accepts, nobody answers: tier 1 times out
  (its budget), then the inbox is written while tier 2 keeps trying (hedged);
- breaker already open: straight to tier 3.

In the first three the breaker is kept from opening (thresholds of 10,000) so
each sample runs the full cascade; the last uses the defaults with a long
reset so it stays open. Latency counts from the ``deliver`` call (the sender's
own outbox write included) to the notification frame read from serve's
stdout; both ends use ``time.perf_counter()``. Floors measured in the same
run: a bare loopback HTTP round trip and a durable file write on the same disk.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import HEADER, Stats, bare_http_floor, durable_write_floor, save
from benchmarks._report import Target, Tick, cdf_svg, progress, verdicts
from mcp_cascade.config import Config
from mcp_cascade.events import NullObserver
from mcp_cascade.response import make_response
from mcp_cascade.send.cascade import Receipt, Sender
from mcp_cascade.testing import ServeProcess, point_webhook_at
from mcp_cascade.wire import TierChoice

SESSION = "bench-failover"
WEBHOOK = "/webhook/bridge-response"
NO_BREAKER = {"breaker_threshold": 1000, "slow_after": 1000}
# A listener that accepts into the kernel backlog and never answers, once SIGSTOPped.
STOPPED_LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1024)\n"
    "print(s.getsockname()[1], flush=True)\n"
    "time.sleep(3600)\n"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def stopped_listener() -> AsyncIterator[int]:
    """A subprocess listening on a port, SIGSTOPped; yields the port."""
    async with await anyio.open_process([sys.executable, "-c", STOPPED_LISTENER]) as child:
        assert child.stdout is not None
        port = int((await child.stdout.receive()).decode())
        child.send_signal(signal.SIGSTOP)
        try:
            yield port
        finally:
            child.send_signal(signal.SIGCONT)
            child.kill()


async def sample(
    serve: ServeProcess,
    sender: Sender,
    prefix: str,
    n: int,
    tick: Tick = lambda advance=1: None,
    tier: TierChoice = "auto",
) -> tuple[list[float], list[Receipt]]:
    """Deliver ``n`` responses one after another; latency to each notification, and the receipts."""
    latencies: list[float] = []
    receipts: list[Receipt] = []
    for i in range(n):
        rid = f"{prefix}:{i}"
        response = make_response(type="message", user_id=7, text="failover " + rid, id=rid)
        start = time.perf_counter()
        receipts.append(await sender.deliver(response, SESSION, tier=tier))
        await serve.wait_for(partial(_arrived, serve, rid), timeout=30)
        arrived = _arrived(serve, rid)
        assert arrived is not None
        latencies.append((arrived - start) * 1000)
        tick()
    return latencies, receipts


def _arrived(serve: ServeProcess, rid: str) -> float | None:
    for note in reversed(serve.channel()):
        if note["params"]["meta"]["response_id"] == rid:
            received: float = note["_received"]
            return received
    return None


def tiers(receipts: list[Receipt]) -> str:
    counts: dict[int, int] = {}
    for receipt in receipts:
        counts[receipt.tier or 0] = counts.get(receipt.tier or 0, 0) + 1
    return ",".join(f"t{tier}×{count}" for tier, count in sorted(counts.items()))


async def run(n: int, floor_n: int, plain: bool = False) -> dict[str, Any]:
    defaults = Config.model_validate({})
    hedged = f"{defaults.webhook_timeout_ms} ms, then tier 3 beside tier 2"
    rows: dict[str, tuple[Stats, str, str]] = {}
    samples: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="mcp-cascade-failover-") as tmp,
        progress("failover", 2 * floor_n + 3 * n + 5, plain=plain) as tick,
    ):
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        samples["floor: bare loopback HTTP"] = await bare_http_floor(floor_n * 5)
        samples["floor: durable write"] = durable_write_floor(Path(tmp) / "floor", floor_n)
        async with ServeProcess(home, SESSION) as serve:
            info = await serve.wait_session()
            await serve.initialize()
            async with Sender(home, Config.model_validate(NO_BREAKER), NullObserver()) as sender:
                lat, rec = await sample(serve, sender, "healthy", floor_n, tick)
                samples["tier 1 healthy"] = lat
                rows["tier 1 healthy"] = (Stats.of(lat), tiers(rec), f"{defaults.webhook_timeout_ms} ms")
                point_webhook_at(home, SESSION, f"http://127.0.0.1:{closed_port()}{WEBHOOK}")
                # The floor of every failover: the same delivery forced onto the inbox (send --tier
                # file), interleaved with the refused ones so both meet the same moments of load.
                lat, rec = [], []
                flat: list[float] = []
                frec: list[Receipt] = []
                for i in range(n):
                    one, got = await sample(serve, sender, f"refused{i}", 1, tick)
                    lat, rec = lat + one, rec + got
                    floor_one, floor_got = await sample(serve, sender, f"file{i}", 1, tick, tier="file")
                    flat, frec = flat + floor_one, frec + floor_got
                samples["floor: tier 3 forced"] = flat
                rows["floor: tier 3 forced (--tier file)"] = (Stats.of(flat), tiers(frec), "nothing")
                samples["tier 1 refused"] = lat
                rows["tier 1 refused"] = (Stats.of(lat), tiers(rec), "none waited: tier 3 at once")

                async with stopped_listener() as port:
                    point_webhook_at(home, SESSION, f"http://127.0.0.1:{port}{WEBHOOK}")
                    lat, rec = await sample(serve, sender, "stopped", n, tick)
                samples["tier 1 SIGSTOPped"] = lat
                rows["tier 1 SIGSTOPped"] = (Stats.of(lat), tiers(rec), hedged)

            point_webhook_at(home, SESSION, f"http://127.0.0.1:{closed_port()}{WEBHOOK}")
            held_open = Config.model_validate({"breaker_reset_ms": 3_600_000})
            async with Sender(home, held_open, NullObserver()) as sender:
                await sample(serve, sender, "trip", 5, tick)
                assert sender.breakers()[SESSION].state == "open"
                lat, rec = await sample(serve, sender, "open", floor_n, tick)
            samples["breaker already open"] = lat
            rows["breaker already open"] = (Stats.of(lat), tiers(rec), "tier 3 only")
            point_webhook_at(home, SESSION, info.webhook_url)

    floor_http = Stats.of(samples["floor: bare loopback HTTP"])
    floor_disk = Stats.of(samples["floor: durable write"])
    print(f"\n{HEADER}  delivered by budget")
    print(f"{'floor: bare loopback HTTP round trip':<44}{floor_http.row()}")
    print(f"{'floor: durable write (tmp, fsync, rename)':<44}{floor_disk.row()}")
    for name, (stats, used, budget) in rows.items():
        print(f"{name:<44}{stats.row()}  {used:<12} {budget}")
    # Floor of each: the same delivery forced onto the inbox, measured in this run (plus, when frozen,
    # the tier-1 budget that must pass before a silent server can be given up on).
    inbox = rows["floor: tier 3 forced (--tier file)"][0].p99
    targets = verdicts(
        [
            Target(
                "failover p99, tier 1 refusing connections", rows["tier 1 refused"][0].p99, 20, floor=inbox
            ),
            Target(
                "failover p99, tier 1 frozen (SIGSTOP)",
                rows["tier 1 SIGSTOPped"][0].p99,
                150,
                floor=defaults.webhook_timeout_ms + inbox,
            ),
            Target("failover p99, breaker open", rows["breaker already open"][0].p99, 10, floor=inbox),
        ]
    )
    picture = cdf_svg("failover", "Failover: deliver() call → notification on serve's stdout", samples)
    return {
        "n": n,
        "floor_n": floor_n,
        "budgets_ms": {"webhook": defaults.webhook_timeout_ms, "bridge": defaults.bridge_timeout_ms},
        "floors": {"bare_http": _stats(floor_http), "durable_write": _stats(floor_disk)},
        "scenarios": {name: {**_stats(stats), "tiers": used} for name, (stats, used, _) in rows.items()},
        "targets": targets,
        "picture": picture.name if picture else None,
    }


def _stats(stats: Stats) -> dict[str, float]:
    return {"n": stats.n, "p50_ms": stats.p50, "p99_ms": stats.p99, "max_ms": stats.max}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20, help="samples per failure scenario (default 20)")
    parser.add_argument("--floor-n", type=int, default=200, help="samples of the fast paths (default 200)")
    parser.add_argument("--json", action="store_true", help="no progress bar; print the results as JSON")
    args = parser.parse_args()
    result = anyio.run(run, args.n, args.floor_n, args.json)
    print(f"\nresults: {save('failover', result)}")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
