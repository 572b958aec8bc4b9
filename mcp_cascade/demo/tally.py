"""What the person sent, what each session received, and what that adds up to.

Pure bookkeeping, no I/O, on the harness's one tally
(:mod:`mcp_cascade.testing.tally`): the demo records every answer it makes the
person give (``expect``) and every frame a session receives (``arrive``); the
verdict and the per-tier figures are computed from those two lists alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mcp_cascade.ops.stats import nearest_rank
from mcp_cascade.testing.tally import Tally


@dataclass(frozen=True, slots=True)
class DemoSent:
    """One answer given: its response id, the session it is for, when (perf_counter), and how."""

    response_id: str
    session: str
    what: str
    at: float
    step: str
    held: bool = False  # its session was stopped when it was given: its latency includes the downtime


@dataclass(frozen=True, slots=True)
class TierFigures:
    """How many responses a tier carried, and their latency (answer given → frame received)."""

    count: int
    timed: int
    p50_ms: float | None
    p99_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "count": self.count,
            "timed": self.timed,
            "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 2),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 2),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether every answer reached its session exactly once.

    ``redelivered`` lists repeats flagged ``redelivered="true"`` (a server
    killed between writing a frame and recording it: the documented unknown
    outcome); they are reported, never counted as duplicates.
    """

    sent: int
    delivered: int
    complete: bool = True  # the scenario ran to its end
    missing: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    misrouted: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    redelivered: tuple[str, ...] = ()

    @property
    def exactly_once(self) -> bool:
        """The run completed, and nothing is missing, repeated without a flag, misrouted or unexpected."""
        return self.complete and not (self.missing or self.duplicates or self.misrouted or self.unexpected)

    def line(self) -> str:
        """The one-line summary the demo ends with."""
        if self.exactly_once:
            text = f"every response delivered exactly once: yes ({self.delivered} of {self.sent})"
            if self.redelivered:
                text += f"; {len(self.redelivered)} flagged redelivery after a kill (unknown outcome)"
            return text
        problems = [] if self.complete else ["the run stopped early"]
        problems += [
            f"{len(ids)} {name}"
            for name, ids in (
                ("missing", self.missing),
                ("duplicated", self.duplicates),
                ("misrouted", self.misrouted),
                ("unexpected", self.unexpected),
            )
            if ids
        ]
        return (
            "every response delivered exactly once: NO"
            f" ({', '.join(problems)}; {self.delivered} of {self.sent} delivered)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "exactly_once": self.exactly_once,
            "line": self.line(),
            "complete": self.complete,
            "sent": self.sent,
            "delivered": self.delivered,
            "duplicates": len(self.duplicates),
            "missing": list(self.missing),
            "duplicated": list(self.duplicates),
            "misrouted": list(self.misrouted),
            "unexpected": list(self.unexpected),
            "redelivered": list(self.redelivered),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0 to 100) of ``values``; None when empty."""
    if not values:
        return None
    return nearest_rank(sorted(values), q / 100)


class DemoTally(Tally[DemoSent]):
    """The answers the person gave and the frames each session received, and what follows from them."""

    def verdict(self, *, complete: bool = True) -> Verdict:
        """Compare what was sent with what each session received (``complete``: the run got to its end)."""
        counts = self.counts()
        return Verdict(
            sent=counts.sent,
            delivered=counts.delivered,
            complete=complete,
            missing=counts.missing,
            duplicates=counts.duplicated,
            misrouted=counts.misrouted,
            unexpected=counts.unexpected,
            redelivered=counts.redelivered,
        )

    def tiers(self) -> dict[int, TierFigures]:
        """Per tier (by the first arrival of each answer): count and latency of the timed ones.

        Answers given while their session was stopped are counted but not timed:
        their wait is the downtime the demo chose, not the cascade's.
        """
        latencies: dict[int, list[float]] = {1: [], 2: [], 3: []}
        counts: Counter[int] = Counter()
        for response_id, arrival in self.counts().first.items():
            if arrival.tier is None:
                continue
            counts[arrival.tier] += 1
            if not self.sent[response_id].held:
                latencies.setdefault(arrival.tier, []).append((arrival.at - self.sent[response_id].at) * 1000)
        return {
            tier: TierFigures(counts[tier], len(values), percentile(values, 50), percentile(values, 99))
            for tier, values in sorted(latencies.items())
        }
