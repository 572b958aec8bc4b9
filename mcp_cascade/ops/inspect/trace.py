"""``inspect trace``: the whole path of one response through the tiers, from the audit trail.

The key is a response id or a correlation id. Every record carrying it is
taken, then every record of the response ids found that way (a duplicate sent
without the original correlation id still belongs to the story), ordered by
time. Each step shows how long after the first it happened and after the
previous one, and the latency the process measured for the step itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mcp_cascade.ops.audit import read_audit

_CORE = frozenset(
    (
        "ts",
        "component",
        "pid",
        "session",
        "tier",
        "event",
        "response_id",
        "correlation_id",
        "latency_ms",
        "reason",
    )
)


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One audit record on the response's path."""

    ts: float
    since_start_ms: float
    since_previous_ms: float
    component: str
    pid: int | None
    session: str | None
    tier: int | None
    event: str
    response_id: str | None
    correlation_id: str | None
    latency_ms: float | None
    reason: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Trace:
    """The path of one response (or of every response sharing a correlation id)."""

    key: str
    response_ids: tuple[str, ...]
    correlation_ids: tuple[str, ...]
    tiers: tuple[int, ...]
    outcome: str
    total_ms: float
    steps: tuple[TraceStep, ...]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return asdict(self)


def find(home: Path, key: str) -> Trace | None:
    """The trace of ``key`` from the home's audit trail; None when no record mentions it."""
    return build(key, read_audit(home))


def build(key: str, records: Iterable[Mapping[str, Any]]) -> Trace | None:
    """The trace of ``key`` among ``records`` (pure)."""
    everything = list(records)
    ids = {r["response_id"] for r in everything if key in (r.get("response_id"), r.get("correlation_id"))}
    ids.discard(None)
    mine = [
        r
        for r in everything
        if r.get("response_id") in ids or (key == r.get("correlation_id") and r.get("response_id") is None)
    ]
    if not mine:
        return None
    mine.sort(key=lambda r: float(r.get("ts", 0.0)))
    start = previous = float(mine[0].get("ts", 0.0))
    steps: list[TraceStep] = []
    for r in mine:
        ts = float(r.get("ts", 0.0))
        steps.append(
            TraceStep(
                ts=ts,
                since_start_ms=round((ts - start) * 1000, 3),
                since_previous_ms=round((ts - previous) * 1000, 3),
                component=str(r.get("component", "?")),
                pid=r.get("pid"),
                session=r.get("session"),
                tier=r.get("tier"),
                event=str(r.get("event", "?")),
                response_id=r.get("response_id"),
                correlation_id=r.get("correlation_id"),
                latency_ms=None if r.get("latency_ms") is None else round(float(r["latency_ms"]), 3),
                reason=r.get("reason"),
                detail={k: v for k, v in r.items() if k not in _CORE},
            )
        )
        previous = ts
    return Trace(
        key=key,
        response_ids=tuple(sorted(ids)),
        correlation_ids=tuple(sorted({s.correlation_id for s in steps if s.correlation_id})),
        tiers=tuple(sorted({s.tier for s in steps if isinstance(s.tier, int)})),
        outcome=outcome(steps),
        total_ms=steps[-1].since_start_ms,
        steps=tuple(steps),
    )


def outcome(steps: Iterable[TraceStep]) -> str:
    """One line for where the response ended up."""
    events = list(steps)
    pushed = [s for s in events if s.event == "pushed"]
    if pushed:
        first = pushed[0]
        probe = " (synthetic probe, not shown to the person)" if first.detail.get("synthetic") else ""
        return f"delivered into {first.session} by tier {first.tier}{probe}"
    sent = [s for s in events if s.event == "sent"]
    if sent:
        return f"sender reports {sent[-1].detail.get('status', '?')} by tier {sent[-1].tier}"
    if any(s.event in ("durable", "queued") for s in events):
        return "durable, not pushed yet"
    if any(s.event == "rejected" for s in events):
        return "rejected: " + next(str(s.reason) for s in reversed(events) if s.event == "rejected")
    return events[-1].event
