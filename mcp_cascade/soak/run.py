"""Running one scenario: set up the sessions and the sender, stream, inject faults, settle, judge.

The end of a scenario is part of the proof: every fault is cleared, every
unacknowledged response is sent again by the upstream (with its id), the
sender's outbox and every inbox drain, and each serve is stopped cleanly, so
whatever it pushed is on record before the counts are made.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import anyio

from mcp_cascade.response import Response
from mcp_cascade.soak.audit import check_audit
from mcp_cascade.soak.disk import SessionDisk
from mcp_cascade.soak.rig import Progress, Rig, SoakAck, stream, write_config
from mcp_cascade.soak.senders import InProcessSender, WorkerSender
from mcp_cascade.soak.tally import StreamTally

# Every scenario's config.toml starts from this: no audit rotation (the audit check reads every record).
BASE_CONFIG: dict[str, Any] = {"audit_max_bytes": 1 << 40, "log_level": "info"}
_SETTLE_S = 120.0


class SenderSide(Protocol):
    """What a scenario's sending side offers the streams."""

    async def deliver(self, response: Response, session: str) -> Mapping[str, Any] | None:
        """Deliver; the receipt as a dict, or None when the sender died first."""

    def outbox_pending(self) -> int:
        """Entries still in the outbox."""


@dataclass
class Context:
    """What a scenario's fault schedule works with."""

    home: Path
    workdir: Path
    logs: Path
    rigs: list[Rig]
    progress: Progress
    ack: SoakAck
    random: random.Random
    config: dict[str, Any]
    sessions: list[str] = field(default_factory=list)  # the names the rigs' sessions get
    tally: StreamTally = field(default_factory=StreamTally)
    sender: SenderSide | None = None
    disk: SessionDisk | None = None
    expectations: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    returns: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # what a schedule measured beside the stream
    started: float = field(default_factory=time.perf_counter)
    nominal_s: float = 10.0  # how long the paced streams take when nothing stalls them
    total: int = 0  # responses the streams send in all

    def log(self, fault: str, action: str, **details: Any) -> None:
        """Record a fault being applied or cleared, with when (seconds into the run) and at which response."""
        self.faults.append(
            {
                "t_s": round(time.perf_counter() - self.started, 3),
                "at_response": self.progress.done,
                "fault": fault,
                "action": action,
                **details,
            }
        )

    async def at(self, fraction: float) -> None:
        """Wait until ``fraction`` of the streams' nominal duration has passed.

        Wall time, not responses done: a fault that stalls the sender (nothing can be made durable)
        makes the streams fall behind and then catch up in a burst, which would squeeze the
        following phases into no time if they waited for a count.
        """
        await anyio.sleep(max(0.0, self.started + fraction * self.nominal_s - time.perf_counter()))

    def expect(
        self,
        label: str,
        tier: int | tuple[int, ...],
        since: float,
        until: float,
        *,
        share: float = 0.75,
        first: bool = False,
    ) -> None:
        """At least ``share`` of the responses begun in [since, until] go by ``tier`` (or any of several).

        With ``first``, by the tier *tried first* (the receipt's first attempt) instead of the one
        that carried it: what a change of ``tier_order`` decides, whatever the timeouts do.
        """
        self.expectations.append(
            {"label": label, "tier": tier, "since": since, "until": until, "share": share, "first": first}
        )

    def reconfigure(self, **values: Any) -> None:
        """Rewrite config.toml with ``values`` over the scenario's own settings (live reload)."""
        write_config(self.home, {**self.config, **values})

    def seen(self) -> set[str]:
        """Response ids any session has received so far."""
        ids: set[str] = set()
        for rig in self.rigs:
            for note in rig.serve.channel():
                ids.add(str(note["params"]["meta"]["response_id"]))
        return ids

    async def back_on_tier1(self, fault: str, timeout: float = 30.0) -> None:
        """After clearing ``fault``: how long until every session's traffic is carried by tier 1 again."""
        cleared = time.perf_counter()
        marks = {rig.session: len(rig.serve.notifications) for rig in self.rigs}
        pending = set(marks)

        def fresh(meta: Mapping[str, Any]) -> bool:  # sent after the fault was cleared
            sent = self.tally.sent.get(str(meta.get("response_id")))
            return sent is not None and sent.began >= cleared

        with anyio.move_on_after(timeout):  # the streams go on past their count until this returns
            while pending:
                for rig in self.rigs:
                    if rig.session in pending and any(
                        n.get("method") == "notifications/claude/channel"
                        and n["params"]["meta"].get("tier") == "1"
                        and fresh(n["params"]["meta"])
                        for n in rig.serve.notifications[marks[rig.session] :]
                    ):
                        pending.discard(rig.session)
                await anyio.sleep(0.01)
        self.returns.append(
            {
                "fault": fault,
                "tier1_again_s": None if pending else round(time.perf_counter() - cleared, 3),
                "sessions_not_back": sorted(pending),
            }
        )


Schedule = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    """A named fault schedule and what it runs on."""

    name: str
    title: str
    schedule: Schedule
    sessions: int = 2
    config: Mapping[str, Any] = field(default_factory=dict)
    sender: str = "inprocess"  # or "worker"
    rate: float = 50.0  # responses per second per session (100 in all with two sessions)
    needs_mounts: bool = False
    prepare: Schedule | None = None  # before serve starts (e.g. mounts)
    late_after_ms: float | None = None  # when set, no response may reach its session later than this
    min_faults: int = 2  # each fault kind must be applied at least this often
    min_duration_s: float = 10.0  # a reduced run is paced slower, so time-based faults still meet traffic


async def run_scenario(
    scenario: Scenario, count: int, seed: int, workdir: Path, tick: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Run ``scenario`` with ``count`` responses in all; the JSON-ready result with its verdict.

    ``tick`` is called once per receipt (the progress bar); the result's ``latencies_ms`` (every
    response's latency to its first push) is for the CDF picture and is not written to the report.
    """
    base = workdir / scenario.name
    home, logs = base / "home", base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = {**BASE_CONFIG, **scenario.config}
    write_config(home, config)
    progress, ack = Progress(tick), SoakAck()
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        sender: InProcessSender | WorkerSender
        ctx = Context(home, base, logs, [], progress, ack, random.Random(seed), config)
        ctx.sessions = [f"{scenario.name}-{i}" for i in range(scenario.sessions)]
        tally = ctx.tally
        if scenario.prepare is not None:
            await scenario.prepare(ctx)
            if ctx.disk is not None:
                stack.push_async_callback(ctx.disk.unmount)
        for i, session in enumerate(ctx.sessions):
            rig = Rig(home, session, logs, seed=seed + i)
            ctx.rigs.append(await stack.enter_async_context(rig))
        if scenario.sender == "worker":
            sender = await stack.enter_async_context(WorkerSender(home, logs, oneshot_every=40))
        else:
            sender = await stack.enter_async_context(InProcessSender(home, logs, ack))
        ctx.sender = sender
        per = [count // scenario.sessions + (i < count % scenario.sessions) for i in range(scenario.sessions)]
        rate = min(scenario.rate, max(per) / scenario.min_duration_s)
        start = time.perf_counter() + 0.05
        ctx.started, ctx.nominal_s, ctx.total = start, max(per) / rate, count
        scheduled = anyio.Event()
        async with anyio.create_task_group() as tg:
            for rig, n in zip(ctx.rigs, per, strict=True):
                tg.start_soon(
                    partial(
                        stream,
                        rig,
                        sender.deliver,
                        tally,
                        progress,
                        scenario=scenario.name,
                        count=n,
                        rate=rate,
                        start=start,
                        overtime=lambda: not scheduled.is_set(),
                    )
                )
            await scenario.schedule(ctx)
            scheduled.set()
        for rig in ctx.rigs:
            rig.thaw()
        settled = await _settle(ctx, tally, sender)
        await stack.aclose()  # serve exits cleanly: everything it pushed is on record
    for rig in ctx.rigs:
        tally.record_pushes(rig.session, rig.serve.notifications)
    verdict = tally.verdict(overall_timeout_ms=scenario.late_after_ms)
    windows = _windows(ctx)
    expectations = []
    for exp in ctx.expectations:
        carriers = tally.carriers(exp["since"], exp["until"], first=exp["first"])
        total = sum(carriers.values())
        tiers = exp["tier"] if isinstance(exp["tier"], tuple) else (exp["tier"],)
        share = sum(carriers[t] for t in tiers) / total if total else 0.0
        expectations.append(
            {
                "label": exp["label"],
                "by": "first tried" if exp["first"] else "carried",
                "tier": " or ".join(str(t) for t in tiers),
                "responses": total,
                "share": round(share, 3),
                "carriers": {f"tier{t}": n for t, n in sorted(carriers.items())},
                "ok": total > 0 and share >= exp["share"],
            }
        )
    audit = check_audit(home, tally)
    bad_lines = sum(len(rig.serve.bad_lines) for rig in ctx.rigs)
    applied: dict[str, int] = {}
    for entry in ctx.faults:
        if entry["action"] == "apply":
            applied[entry["fault"]] = applied.get(entry["fault"], 0) + 1
    failures = _failures(scenario, verdict, audit, settled, bad_lines, applied, ctx)
    failures += [
        f"{e['label']}: tier {e['tier']} {e['by']} {e['share']:.0%} of {e['responses']} responses"
        for e in expectations
        if not e["ok"]
    ]
    return {
        "scenario": scenario.name,
        "title": scenario.title,
        "count": count,
        "overtime": len(tally.sent) - count,  # sent past the count while a return to tier 1 was awaited
        "sessions": scenario.sessions,
        "seed": seed,
        "duration_s": round(time.perf_counter() - started, 2),
        "config": {k: v for k, v in config.items() if k not in BASE_CONFIG},
        "verdict": verdict,
        "latencies_ms": tally.latencies(),
        "audit": audit,
        "settled": settled,
        "stdout_bad_lines": bad_lines,
        "faults_applied": applied,
        "fault_log": ctx.faults,
        "rate_per_session": round(rate, 2),
        "carriers": expectations,
        "during_faults": windows,
        "tier1_returns": ctx.returns,
        "ack": {"calls": ack.calls, "failures": ack.failures},
        "kills": {
            "serve": sum(r.kills for r in ctx.rigs),
            "serve_freezes": sum(r.freezes for r in ctx.rigs),
            "serve_crashes": sum(len(r.crashes) for r in ctx.rigs),
            **(
                {"sender": sender.kills, "oneshots": sender.oneshots, "oneshot_kills": sender.oneshot_kills}
                if isinstance(sender, WorkerSender)
                else {}
            ),
        },
        "proxy": {r.session: {str(k): v for k, v in r.proxy.counts.items()} for r in ctx.rigs},
        "checks": ctx.checks,
        **({"figures": ctx.figures} if ctx.figures else {}),
        "notes": ctx.notes,
        "failures": failures,
        "passed": not failures,
    }


async def _settle(ctx: Context, tally: StreamTally, sender: SenderSide) -> dict[str, Any]:
    """Resend what no receipt acknowledged, then wait for every response and every queue to drain."""
    began = time.perf_counter()
    resent = 0
    with anyio.move_on_after(_SETTLE_S):
        for _ in range(20):
            unacked = tally.unacked()
            if not unacked:
                break
            for entry in unacked:
                assert entry.response is not None
                tally.schedule(entry.response, entry.session, entry.index, entry.scheduled)
                receipt = await sender.deliver(entry.response, entry.session)
                resent += 1
                if receipt is not None:
                    tally.receipt(entry.response_id, receipt)
            if tally.unacked():
                await anyio.sleep(1.0)
        wanted = set(tally.sent)
        # Three sources (notifications, the outbox folder, the inboxes) with no common event: poll them.
        while not wanted <= ctx.seen() or sender.outbox_pending() or any(r.inbox_backlog() for r in ctx.rigs):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return {
        "resent_by_upstream": resent,
        "unacked_left": len(tally.unacked()),
        "outbox_left": sender.outbox_pending(),
        "inbox_left": sum(r.inbox_backlog() for r in ctx.rigs),
        "settle_s": round(time.perf_counter() - began, 3),
    }


def _windows(ctx: Context) -> list[dict[str, Any]]:
    """For each fault from apply to clear: how the responses sent meanwhile fared (receipts, tiers)."""
    opened: dict[str, float] = {}
    windows: list[dict[str, Any]] = []
    for entry in ctx.faults:
        at = ctx.started + entry["t_s"]
        if entry["action"] == "apply":
            opened[entry["fault"]] = at
            continue
        since = opened.pop(entry["fault"], None)
        if since is None:
            continue
        receipts: dict[str, int] = {}
        for sent in ctx.tally.sent.values():
            if since <= sent.began <= at and sent.receipts:
                first = sent.receipts[0]
                key = f"{first.get('status')}/tier{first.get('tier')}"
                receipts[key] = receipts.get(key, 0) + 1
        windows.append(
            {
                "fault": entry["fault"],
                "seconds": round(at - since, 3),
                "first_receipts": dict(sorted(receipts.items())),
            }
        )
    return windows


def _failures(
    scenario: Scenario,
    verdict: Mapping[str, Any],
    audit: Mapping[str, Any],
    settled: Mapping[str, Any],
    bad_lines: int,
    applied: Mapping[str, int],
    ctx: Context,
) -> list[str]:
    failures = [
        f"{key}: {verdict[key]}"
        for key in ("lost", "acked_not_delivered", "duplicated", "unknown", "wrong_session", "out_of_order")
        if verdict[key]
    ]
    if scenario.late_after_ms is not None and verdict["late"]:
        failures.append(f"late (after {scenario.late_after_ms:.0f} ms): {verdict['late']}")
    if audit["incomplete"]:
        failures.append(f"audit incomplete for {audit['incomplete']} responses, e.g. {audit['examples']}")
    if settled["unacked_left"] or settled["outbox_left"] or settled["inbox_left"]:
        failures.append(f"not settled: {dict(settled)}")
    if bad_lines:
        failures.append(f"{bad_lines} non-JSON-RPC lines on serve's stdout")
    failures += [f"{rig.session}: {crash}" for rig in ctx.rigs for crash in rig.crashes]
    failures += [
        f"fault {f} applied {n} times (< {scenario.min_faults})"
        for f, n in applied.items()
        if n < scenario.min_faults
    ]
    failures += [f"check failed: {name}" for name, ok in ctx.checks.items() if not ok]
    failures += [
        f"tier 1 did not carry traffic again after {r['fault']}: {r['sessions_not_back']}"
        for r in ctx.returns
        if r["sessions_not_back"]
    ]
    return failures
