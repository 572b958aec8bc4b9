"""``mcp-cascade demo``: the whole system run as a newcomer would, and the bookkeeping behind its verdict."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

from mcp_cascade.demo import run as demo_run
from mcp_cascade.demo.tally import DemoSent, DemoTally, percentile
from mcp_cascade.testing.tally import Arrival

DEMO = [sys.executable, "-m", "mcp_cascade", "demo"]
BOUND_S = 90.0  # the demo takes well under 30 s; this only catches a hang on a loaded machine


def running_with(needle: str) -> list[str]:
    """Command lines of live (non-zombie) processes the demo started that mention ``needle``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and " demo " not in cmdline and state not in ("Z", "X"):
            found.append(cmdline)
    return found


@pytest.mark.anyio
async def test_the_json_run_delivers_every_answer_once_through_every_tier(home: Path) -> None:
    started = time.monotonic()
    with anyio.fail_after(BOUND_S + 30):
        done = await anyio.run_process([*DEMO, "--json", "--home", str(home)], check=False)
    took = time.monotonic() - started
    print(f"mcp-cascade demo --json took {took:.1f} s")
    report = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert done.returncode == 0, (report.get("error"), done.stderr.decode()[-2000:])
    assert took < BOUND_S
    verdict = report["verdict"]
    assert verdict["exactly_once"] is True and report["error"] is None
    assert verdict["duplicates"] == 0 and verdict["missing"] == [] and verdict["misrouted"] == []
    assert verdict["delivered"] == verdict["sent"] > 300
    assert verdict["line"].startswith("every response delivered exactly once: yes")
    tiers = report["tiers"]
    assert all(tiers[t]["count"] >= 1 for t in ("1", "2", "3")), tiers
    assert sum(t["count"] for t in tiers.values()) == verdict["delivered"]
    assert all(tiers[t]["p50_ms"] <= tiers[t]["p99_ms"] for t in ("1", "2", "3"))
    reasons = {f["reason"] for f in report["failovers"]}
    # The black hole times tier 1 out (hedged onto the inbox) or, once the breaker is open, skips it as slow.
    assert "session_down" in reasons and reasons & {"timeout", "slow"}, reasons
    assert reasons & {"error", "refused"}, reasons
    hops = {(f["from_tier"], f["to_tier"]) for f in report["failovers"]}
    assert {(1, 2), (2, 3)} <= hops <= {(1, 2), (2, 3), (1, 3)}, hops
    moves = [(t["session"], t["state"]) for t in report["breaker_transitions"]]
    assert ("backend", "open") in moves and moves[-1] == ("backend", "closed"), moves
    assert report["held"] == 2
    names = [s["name"] for s in report["steps"]]
    assert {
        "tap",
        "reply",
        "text",
        "permission",
        "reset",
        "blackhole",
        "kill",
        "restart",
        "flood",
        "settle",
    } <= set(names)
    assert all(s["completed"] for s in report["steps"])
    assert report["elapsed_s"] < took
    assert running_with(str(home)) == []


@pytest.mark.anyio
async def test_the_terminal_output_ends_with_the_verdict_line(home: Path) -> None:
    with anyio.fail_after(BOUND_S + 30):
        done = await anyio.run_process([*DEMO, "--home", str(home)], check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out[-3000:] + done.stderr.decode()[-2000:]
    lines = out.rstrip("\n").splitlines()
    assert lines[-1].startswith("every response delivered exactly once: yes (")
    assert "Which tier carried each response" in out
    for expected in ("tier 1", "tier 2", "tier 3", "breaker → open (slow)", "breaker → closed"):
        assert expected in out, expected
    assert running_with(str(home)) == []


@pytest.mark.anyio
async def test_a_ctrl_c_mid_run_stops_every_process_it_started(home: Path) -> None:
    with anyio.fail_after(60):
        process = await anyio.open_process([*DEMO, "--home", str(home)])
        assert process.stdout is not None
        seen = b""
        async for chunk in process.stdout:
            seen += chunk
            if b"the person taps a button" in seen:  # everything is up: the first answer is being given
                break
        assert len(running_with(str(home))) == 3  # the bridge and two serve processes
        process.send_signal(signal.SIGINT)
        async for chunk in process.stdout:
            seen += chunk
        code = await process.wait()
    out = seen.decode()
    assert code == 128 + signal.SIGINT, out
    assert "stopped by SIGINT" in out
    assert out.rstrip("\n").splitlines()[-1].startswith("every response delivered exactly once: NO")
    assert running_with(str(home)) == []


def test_past_its_deadline_the_demo_says_where_it_was_and_leaves_nothing_running(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo_run, "DEADLINE_S", 0.5)
    started = time.monotonic()
    code = demo_run.run_demo(json_out=True, home=home)
    assert time.monotonic() - started < 20
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["error"].startswith("did not finish within 0.5 s, at step 'start'")
    assert report["verdict"]["exactly_once"] is False and report["verdict"]["complete"] is False
    assert "the run stopped early" in report["verdict"]["line"]
    assert running_with(str(home)) == []


def test_a_nonempty_home_is_refused_before_anything_starts(home: Path) -> None:
    (home / "secret").write_text("whsec_x")
    with pytest.raises(Exception, match="not empty"):
        demo_run.run_demo(json_out=True, home=home)


# --- the bookkeeping ------------------------------------------------------------------------------


def sent(rid: str, session: str = "a", at: float = 0.0, held: bool = False) -> DemoSent:
    return DemoSent(rid, session, "text", at, "step", held)


def test_a_flagged_redelivery_is_reported_apart_and_is_not_a_duplicate() -> None:
    tally = DemoTally()
    tally.expect(sent("r1"))
    tally.arrive(Arrival("r1", "a", 1, 0.01))
    tally.arrive(Arrival("r1", "a", 3, 0.02, redelivered=True))
    verdict = tally.verdict()
    assert verdict.exactly_once
    assert verdict.redelivered == ("r1",) and verdict.duplicates == ()
    assert "1 flagged redelivery" in verdict.line()


def test_an_unflagged_repeat_a_wrong_session_a_stranger_and_a_gap_each_fail_the_verdict() -> None:
    for arrivals, field in (
        ([Arrival("r1", "a", 1, 0.1), Arrival("r1", "a", 3, 0.2)], "duplicates"),
        ([Arrival("r1", "b", 1, 0.1)], "misrouted"),
        ([Arrival("r1", "a", 1, 0.1), Arrival("zz", "a", 1, 0.1)], "unexpected"),
        ([], "missing"),
    ):
        tally = DemoTally()
        tally.expect(sent("r1"))
        for arrival in arrivals:
            tally.arrive(arrival)
        verdict = tally.verdict()
        assert not verdict.exactly_once, field
        assert getattr(verdict, field), field
        assert verdict.line().startswith("every response delivered exactly once: NO")


def test_tiers_count_first_arrivals_and_time_only_answers_given_while_their_session_was_up() -> None:
    tally = DemoTally()
    tally.expect(sent("fast", at=1.0))
    tally.expect(sent("held", at=1.0, held=True))
    tally.expect(sent("slow", at=1.0))
    tally.arrive(Arrival("fast", "a", 1, 1.010))
    tally.arrive(Arrival("held", "a", 3, 9.0))
    tally.arrive(Arrival("slow", "a", 3, 1.250))
    tally.arrive(Arrival("slow", "a", 1, 1.300, redelivered=True))
    tiers = tally.tiers()
    assert (tiers[1].count, tiers[2].count, tiers[3].count) == (1, 0, 2)
    assert tiers[3].timed == 1 and tiers[3].p50_ms == pytest.approx(250.0)
    assert tiers[2].p50_ms is None


def test_a_run_that_stopped_early_is_never_a_yes() -> None:
    tally = DemoTally()
    tally.expect(sent("r1"))
    tally.arrive(Arrival("r1", "a", 1, 0.1))
    verdict = tally.verdict(complete=False)
    assert not verdict.exactly_once
    assert verdict.line() == (
        "every response delivered exactly once: NO (the run stopped early; 1 of 1 delivered)"
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
