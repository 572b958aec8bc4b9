"""Many consecutive responses through the fault-injecting proxy in front of a real serve.

Random connection resets (before and after the server acted), latency over the
webhook budget, black holes, half-closes and trickled answers. Every response
must reach the session exactly once, counted by the MCP client on serve's
stdout. 500 by default (every fault is hit many times); ``CASCADE_FULL=1`` runs 10,000.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mcp_cascade.response import make_response
from mcp_cascade.send.cascade import Receipt, Sender
from mcp_cascade.testing import ServeProcess, point_webhook_at
from mcp_cascade.testing.faults import Fault, FaultProxy
from tests.cascade_helpers import Recorder, config, seen

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

COUNT = 10_000 if os.environ.get("CASCADE_FULL") == "1" else 500
# Faulty enough that tier 2 sometimes runs out of budget and the breaker opens (tier 3 then).
MIX = {
    Fault.PASS: 0.64,
    Fault.RESET: 0.06,
    Fault.RESET_AFTER: 0.06,
    Fault.LATENCY: 0.06,
    Fault.BLACKHOLE: 0.06,
    Fault.HALF_CLOSE: 0.06,
    Fault.TRICKLE: 0.06,
}


async def test_every_response_through_a_faulty_network_arrives_exactly_once(home: Path) -> None:
    # Half the default budgets (the latency fault stays well over them): the same walk, twice the pace.
    cfg = config(webhook_timeout_ms=50, bridge_timeout_ms=250, breaker_reset_ms=50, breaker_max_reset_ms=400)
    ids = [f"st:{n}" for n in range(COUNT)]
    receipts: list[Receipt] = []
    async with ServeProcess(home, "stress") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        host, port = info.webhook_url.split("//")[1].split("/")[0].split(":")
        async with FaultProxy(host, int(port)) as proxy, Sender(home, cfg, Recorder()) as sender:
            proxy.mix(MIX, seed=20261129, latency_s=0.2, trickle_bytes=4, trickle_interval_s=0.03)
            point_webhook_at(home, "stress", proxy.url("/webhook/bridge-response"))
            started = time.perf_counter()
            for n, rid in enumerate(ids, 1):
                response = make_response(type="message", user_id=42, text=f"answer {rid}", id=rid)
                receipts.append(await sender.deliver(response, "stress"))
                if n % 1000 == 0:
                    print(f"{n} sent in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            elapsed = time.perf_counter() - started
            await serve.wait_for(lambda: len(seen(serve)) >= COUNT, timeout=120)
        counts = seen(serve)
    assert serve.bad_lines == []
    assert all(r.status in ("delivered", "queued") for r in receipts)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, "a response reached the session twice"
    assert len(serve.channel()) == COUNT
    faults = dict(proxy.counts)
    assert all(faults.get(f, 0) >= 3 for f in MIX), faults
    by_tier = Counter(r.tier for r in receipts)
    meta = Counter(n["params"]["meta"]["tier"] for n in serve.channel())
    print(
        f"\n{COUNT} responses in {elapsed:.1f} s; receipts by tier {dict(by_tier)}; "
        f"notifications by meta tier {dict(meta)}; proxy exchanges {faults}; "
        f"p50/p99 receipt latency {_pct(receipts, 50):.1f}/{_pct(receipts, 99):.1f} ms"
    )


def _pct(receipts: list[Receipt], p: int) -> float:
    latencies = sorted(r.latency_ms for r in receipts)
    return latencies[min(len(latencies) - 1, len(latencies) * p // 100)]
