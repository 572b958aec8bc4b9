"""``mcp-cascade soak`` at the reduced size, one scenario per test, on real processes.

Each run drives a few hundred responses through the real sender into real
serve processes while its faults are injected, and its JSON verdict must show
nothing lost, nothing silently doubled, order kept per path, every fault met,
the audit trail complete, and tier 1 carrying traffic again after each fault.
The counting itself is checked first, on hand-made records, so a verdict of
zero means zero.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_cascade.response import make_response
from mcp_cascade.soak.audit import _problems
from mcp_cascade.soak.load import run_load
from mcp_cascade.soak.scenarios import SCENARIOS
from mcp_cascade.soak.tally import StreamTally, percentiles

REPO = str(Path(__file__).resolve().parent.parent)


def _note(rid: str, at: float, tier: int = 1, redelivered: bool = False) -> dict[str, Any]:
    meta = {"response_id": rid, "tier": str(tier)}
    if redelivered:
        meta["redelivered"] = "true"
    return {"method": "notifications/claude/channel", "params": {"meta": meta}, "_received": at}


def _tally(n: int) -> StreamTally:
    tally = StreamTally()
    for i in range(n):
        response = make_response(type="message", user_id=1, text="x", id=f"r:{i}")
        tally.schedule(response, "s", i, float(i))
        tally.receipt(response.id, {"status": "delivered", "tier": 1, "attempts": [{"tier": 1}]})
    return tally


def test_the_tally_counts_lost_silent_duplicates_and_flagged_redeliveries_apart() -> None:
    tally = _tally(4)
    tally.record_pushes(
        "s",
        [
            _note("r:0", 0.1),
            _note("r:1", 1.1),
            _note("r:1", 1.2),  # a silent repeat
            _note("r:2", 2.1),
            _note("r:2", 2.2, redelivered=True),  # the documented unknown-outcome case
        ],
    )
    verdict = tally.verdict()
    assert (verdict["lost"], verdict["acked_not_delivered"]) == (1, 1)  # r:3
    assert verdict["duplicated"] == 1
    assert verdict["redelivered"] == 1
    assert verdict["examples"]["lost"] == ["r:3"]


def test_the_tally_finds_responses_pushed_out_of_order_within_one_path_only() -> None:
    tally = _tally(4)
    tally.record_pushes(
        "s",
        [_note("r:1", 1.0), _note("r:0", 2.0), _note("r:2", 3.0, tier=3), _note("r:3", 2.5, tier=1)],
    )
    # r:0 after r:1 by the store path is one inversion; r:2 by the inbox after r:3 is a different path.
    assert tally.verdict()["out_of_order"] == 1


def test_latency_counts_from_the_hand_over_or_the_scheduled_time_and_percentiles_use_the_nearest_rank() -> (
    None
):
    tally = _tally(1)
    tally.sent["r:0"].began = 0.1  # handed to the sender 100 ms after it was due
    tally.record_pushes("s", [_note("r:0", 0.25)])
    assert tally.verdict()["latency_ms"]["tier1"]["p50"] == 150.0
    assert tally.verdict(from_scheduled=True)["latency_ms"]["tier1"]["p50"] == 250.0
    assert tally.verdict()["stream_lag_ms"]["max"] == 100.0
    assert percentiles([float(n) for n in range(1, 1001)])["p99_9"] == 999.0


async def _soak(tmp_path: Path, scenario: str) -> dict[str, Any]:
    report = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_CASCADE_")}
    env["PYTHONPATH"] = REPO
    command = [sys.executable, "-m", "mcp_cascade", "soak", "--scenario", scenario, "--count", "small"]
    command += ["--seed", "7", "--json", str(report), "--workdir", str(tmp_path / "work")]
    with anyio.fail_after(240):
        done = await anyio.run_process(command, env=env, check=False)
    assert report.exists(), done.stderr.decode()[-3000:]
    data: dict[str, Any] = json.loads(report.read_text())
    result: dict[str, Any] = data["scenarios"][0]
    assert len(data["scenarios"]) == 1
    assert done.returncode == (0 if result.get("passed", True) else 1)
    return result


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS if s.name != "poison"])
async def test_the_reduced_soak_loses_and_doubles_nothing_whatever_breaks(
    tmp_path: Path, scenario: str
) -> None:
    result = await _soak(tmp_path, scenario)
    if result.get("skipped"):
        pytest.skip(f"{scenario}: {result['skipped']}")
    verdict = result["verdict"]
    assert result["failures"] == [], result["failures"]
    # Past its 240 a stream goes on while a fault's return to tier 1 is awaited (a slow restart).
    assert result["overtime"] >= 0
    assert verdict["sent"] == verdict["received"] == 240 + result["overtime"]
    assert verdict["lost"] == verdict["duplicated"] == verdict["acked_not_delivered"] == 0
    assert verdict["out_of_order"] == 0
    assert result["audit"]["checked"] == verdict["acked"] and result["audit"]["incomplete"] == 0
    assert result["faults_applied"], "the schedule injected no fault"
    assert all(r["tier1_again_s"] is not None for r in result["tier1_returns"])
    assert all(c["ok"] for c in result["carriers"])
    assert result["stdout_bad_lines"] == 0
    assert result["passed"] is True


@pytest.mark.anyio
async def test_the_load_test_forces_each_tier_and_loses_nothing(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        result = await run_load(duration_s=1.0, rate=40, step_s=1.0, offered_rates=(40, 80), workdir=tmp_path)
    modes = {m["mode"]: m for m in result["constant"]}
    assert [(m["sent"], m["lost"], m["duplicated"]) for m in modes.values()] == [(40, 0, 0)] * 4
    assert modes["tier 1 (webhook forced)"]["carried_by"] == {"tier1": 40}
    assert modes["tier 3 (file forced)"]["carried_by"] == {"tier3": 40}
    assert modes["tier 2 (first attempt fails)"]["carried_by"] == {"tier2": 40}
    assert [s["offered"] for s in result["steps"]] == [40, 80] or result["steps"][-1]["saturated"]
    assert result["lost"] == 0
    assert result["loopback_floor_ms"]["p50"] > 0


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is not installed")
async def test_the_reduced_cluster_soak_loses_doubles_and_reorders_nothing_while_nodes_die(
    tmp_path: Path,
) -> None:
    result = await _soak(tmp_path, "cluster")
    verdict = result["verdict"]
    assert result["failures"] == [], result["failures"]
    assert verdict["sent"] == verdict["received"] == 240
    assert verdict["lost"] == verdict["duplicated"] == verdict["out_of_order"] == 0
    assert verdict["acked_not_delivered"] == 0
    assert result["faults_applied"] == {"node SIGKILL": 3}
    assert verdict["carried_by"] == {"tier4": 240}
    # The audit trail of both homes: the sender's attempts in one, durable before pushed in the other.
    assert result["audit"]["checked"] == verdict["acked"] == 240
    assert result["audit"]["incomplete"] == 0, result["audit"]["examples"]
    assert result["passed"] is True


@pytest.mark.anyio
async def test_the_reduced_poison_soak_refuses_or_quarantines_every_poison_and_loses_no_good_response(
    tmp_path: Path,
) -> None:
    result = await _soak(tmp_path, "poison")
    verdict, poisons = result["verdict"], result["figures"]["poisons"]
    assert result["failures"] == [], result["failures"]
    assert verdict["sent"] == verdict["received"] == 240 + result["overtime"]
    assert verdict["lost"] == verdict["duplicated"] == verdict["unknown"] == 0
    assert set(verdict["carried_by"]) == {"tier1", "tier2", "tier3"}  # good ones went by every tier
    assert poisons["sent"] >= 80 and all(status[2] == "4" for status in poisons["webhook_answers"])
    assert poisons["inbox_set_aside"] == poisons["inbox_planted"]
    for session, planted in poisons["inbox_planted"].items():
        counted = [n for k, n in poisons["quarantined_total"].items() if k.startswith(f"{session} tier 3 ")]
        assert sum(counted) == planted
    assert result["checks"] and all(result["checks"].values())
    assert result["kills"]["serve"] == result["kills"]["serve_crashes"] == 0


def test_the_audit_check_takes_a_failover_to_tiers_2_and_3_at_once_but_wants_one_reaching_each() -> None:
    attempts: list[dict[str, Any]] = []
    receipt = {"correlation_id": "c", "status": "queued", "attempts": attempts}
    records: list[dict[str, Any]] = [
        {"component": "serve", "event": e, "tier": 3} for e in ("claimed", "durable", "pushed")
    ]
    records.append({"correlation_id": "c", "event": "sent", "status": "queued"})
    for tier, outcome in ((1, "timeout"), (2, "timeout"), (3, "ok")):  # 2's attempt ended before 3's
        attempts.append({"tier": tier, "outcome": outcome})
        records.append({"correlation_id": "c", "event": "attempt", "tier": tier, "outcome": outcome})
    failover = [{"correlation_id": "c", "event": "failover", "from_tier": 1, "to_tier": t} for t in (2, 3)]
    assert _problems(receipt, list(enumerate(records + failover)), 3) == []
    assert _problems(receipt, list(enumerate(records + failover[:1])), 3) == ["no failover record 2→3"]
