"""Regression guard: the recorded benchmark figures, as ratios to floors measured in the same run.

Never an absolute time: each figure is divided by a floor this test measures
beside it, on the same machine at the same moment, and compared with the same
ratio in the benchmark's recorded results (``benchmarks/results/*.json``). The
test fails only when a ratio falls below half of the recorded one, which a busy
machine does not do by itself but a lost optimisation does (a refused tier 1
that waits out tier 2's budget again is some 30 times worse, not twice).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import anyio
import pytest

from benchmarks._common import RESULTS, Pool
from benchmarks.failover import SESSION, WEBHOOK, closed_port, sample
from benchmarks.tier1_webhook import closed_loop, floor_throughput
from mcp_cascade.cascade import Sender
from mcp_cascade.config import Config
from mcp_cascade.events import NullObserver
from mcp_cascade.signing import Signer
from mcp_cascade.testing import ServeProcess, point_webhook_at

pytestmark = pytest.mark.anyio


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return data


def guard(name: str, now: float, then: float) -> None:
    print(f"{name}: ratio {now:.4g} now, {then:.4g} recorded")
    assert now >= then / 2, f"{name} fell to {now:.4g} from a recorded {then:.4g} (ratio to its floor)"


async def test_a_refused_tier_1_fails_over_about_as_fast_as_the_inbox_alone(tmp_path: Path) -> None:
    then = recorded("failover")["scenarios"]
    then_ratio = then["floor: tier 3 forced (--tier file)"]["p50_ms"] / then["tier 1 refused"]["p50_ms"]
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    with anyio.fail_after(120):
        async with ServeProcess(home, SESSION) as serve:
            await serve.wait_session()
            await serve.initialize()
            point_webhook_at(home, SESSION, f"http://127.0.0.1:{closed_port()}{WEBHOOK}")
            cfg = Config.model_validate({"breaker_threshold": 1000, "slow_after": 1000})
            async with Sender(home, cfg, NullObserver()) as sender:
                refused: list[float] = []
                forced: list[float] = []
                for n in range(9):  # interleaved, so both see the same moments of load
                    refused += (await sample(serve, sender, f"guard{n}", 1))[0]
                    forced += (await sample(serve, sender, f"floor{n}", 1, tier="file"))[0]
    ratio = statistics.median(forced) / statistics.median(refused)
    guard("refused failover (inbox alone / refused)", ratio, then_ratio)


async def test_tier_1_sustained_throughput_holds_against_a_bare_responder(tmp_path: Path) -> None:
    then = recorded("tier1")
    then_ratio = then["closed_loop"]["throughput_per_s"] / then["floors"]["bare_responder_per_s"]
    home = tmp_path / "home"
    with anyio.fail_after(120):
        floor = await floor_throughput(16, 0.5)
        async with ServeProcess(home, "guard") as serve:
            info = await serve.wait_session()
            await serve.initialize()
            signer = Signer((home / "secret").read_text().strip())
            pool = await Pool.open(info.webhook_url, 16)
            try:
                rate, _, _ = await closed_loop(serve, pool, WEBHOOK, signer, 16, 1.5)
            finally:
                pool.close()
    guard("tier-1 throughput (serve / bare responder)", rate / floor, then_ratio)
