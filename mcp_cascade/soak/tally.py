"""What was sent and what each session received, and the verdict drawn from them (pure logic).

The harness records every response it hands to a sender (when it was due, the
receipt, whether the receipt acknowledged it) and, at the end, every channel
notification the MCP client side of each session received. From those alone
it counts lost, duplicated, redelivered and out-of-order responses and the
latency per tier: from the hand-over to the sender for the soak's streams
(each waits for the previous receipt; how far they fell behind their pace is
reported as the stream lag), from the *scheduled* time for open-loop load (so
a stalled sender shows up as latency instead of hiding it).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_cascade.ops.stats import nearest_rank
from mcp_cascade.response import Response
from mcp_cascade.testing.tally import Arrival, Tally

BUDGET_MS = {1: 100.0, 2: 500.0, 3: 5000.0}


@dataclass(slots=True)
class Sent:
    """One response the harness generated, and what became of it on the sending side."""

    response_id: str
    session: str
    index: int  # its position in the session's stream
    scheduled: float  # perf_counter time it was due
    receipts: list[Mapping[str, Any]] = field(default_factory=list)
    response: Response | None = None  # what was sent, kept to send the same again
    began: float = 0.0  # perf_counter time it was first handed to a sender
    tries: int = 0  # how often it was handed to a sender (an upstream resends unacknowledged ones)

    @property
    def acked(self) -> bool:
        """A receipt said delivered or queued: the sender took responsibility for it."""
        return any(r.get("status") in ("delivered", "queued") for r in self.receipts)

    @property
    def final(self) -> Mapping[str, Any] | None:
        """The acknowledging receipt (or the last one)."""
        for receipt in self.receipts:
            if receipt.get("status") in ("delivered", "queued"):
                return receipt
        return self.receipts[-1] if self.receipts else None


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p99, p99.9 and max (nearest rank), rounded to 0.01 ms."""
    if not values:
        return {"count": 0, "p50": None, "p99": None, "p99_9": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(nearest_rank(ordered, q), 2)

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p99": rank(0.99),
        "p99_9": rank(0.999),
        "max": round(ordered[-1], 2),
    }


class StreamTally(Tally[Sent]):
    """Everything one scenario sent and received, with the senders' receipts and pacing."""

    def schedule(self, response: Response, session: str, index: int, scheduled: float) -> Sent:
        """Record a response about to be handed to a sender."""
        entry = self.sent.get(response.id)
        if entry is None:
            entry = Sent(response.id, session, index, scheduled, response=response, began=time.perf_counter())
            self.expect(entry)
        entry.tries += 1
        return entry

    def receipt(self, response_id: str, receipt: Mapping[str, Any]) -> None:
        """Record a sender's receipt for it."""
        self.sent[response_id].receipts.append(receipt)

    def unacked(self) -> list[Sent]:
        """Responses no receipt acknowledged yet, in stream order."""
        return sorted((s for s in self.sent.values() if not s.acked), key=lambda s: (s.session, s.index))

    def record_pushes(self, session: str, notifications: Iterable[Mapping[str, Any]]) -> None:
        """Take the channel notifications a session's client received."""
        for note in notifications:
            if note.get("method") != "notifications/claude/channel":
                continue
            meta = note.get("params", {}).get("meta", {})
            self.arrive(
                Arrival(
                    str(meta.get("response_id")),
                    session,
                    int(meta.get("tier", 0)),
                    float(note.get("_received", 0.0)),
                    meta.get("redelivered") == "true",
                )
            )

    def latencies(self, *, from_scheduled: bool = False) -> list[float]:
        """Every response's latency to its first push, in ms (for the CDF picture)."""
        return [ms for _, _, ms in self._first_pushes(self.counts().first, from_scheduled)]

    def _first_pushes(
        self, first: Mapping[str, Arrival], from_scheduled: bool
    ) -> Iterator[tuple[str, int, float]]:
        for rid, arrival in first.items():
            sent = self.sent[rid]
            yield (
                rid,
                arrival.tier or 0,
                (arrival.at - (sent.scheduled if from_scheduled else sent.began)) * 1000,
            )

    def verdict(
        self, *, overall_timeout_ms: float | None = None, from_scheduled: bool = False
    ) -> dict[str, Any]:
        """The counts that decide the scenario, and the latency per tier (JSON-ready).

        Latency runs from when a response was handed to a sender, or with ``from_scheduled``
        from when it was due (open-loop load, where a late start must count too).
        """
        counts = self.counts()
        lost, duplicated, redelivered = counts.missing, counts.duplicated, counts.redelivered
        acked_lost = [rid for rid in lost if self.sent[rid].acked]
        latency: dict[int, list[float]] = {1: [], 2: [], 3: []}
        late: list[str] = []
        for rid, tier, ms in self._first_pushes(counts.first, from_scheduled):
            latency.setdefault(tier, []).append(ms)
            if overall_timeout_ms is not None and ms > overall_timeout_ms:
                late.append(rid)
        receipts = Counter(
            f"{r.get('status')}/tier{r.get('tier')}" for s in self.sent.values() if (r := s.final) is not None
        )
        return {
            "sent": len(self.sent),
            "acked": sum(s.acked for s in self.sent.values()),
            "resent": sum(s.tries - 1 for s in self.sent.values()),
            "received": counts.delivered,
            "pushes": len(self.arrivals),
            "lost": len(lost),
            "acked_not_delivered": len(acked_lost),
            "duplicated": len(duplicated),
            "redelivered": len(redelivered),
            "unknown": len(counts.unexpected),
            "wrong_session": len(counts.misrouted),
            "out_of_order": len(inversions := self.out_of_order(counts.first)),
            "late": len(late),
            "carried_by": {f"tier{t}": n for t, n in sorted(counts.per_tier().items())},
            "receipts": dict(sorted(receipts.items())),
            "latency_ms": {f"tier{t}": percentiles(v) for t, v in sorted(latency.items()) if v},
            "stream_lag_ms": percentiles([(s.began - s.scheduled) * 1000 for s in self.sent.values()]),
            "examples": {
                "lost": list(lost[:5]),
                "duplicated": list(duplicated[:5]),
                "redelivered": list(redelivered[:5]),
                "late": late[:5],
                "out_of_order": inversions[:5],
            },
        }

    def carriers(self, since: float, until: float, *, first: bool = False) -> Counter[int]:
        """Acknowledging receipts' tiers (or first tried tiers) of responses sent between the two times."""
        found: Counter[int] = Counter()
        for sent in self.sent.values():
            if since <= sent.began <= until and sent.acked and (final := sent.final) is not None:
                attempts = final.get("attempts") or [{}]
                found[int((attempts[0] if first else final).get("tier") or 0)] += 1
        return found

    def out_of_order(self, first: Mapping[str, Arrival]) -> list[str]:
        """Acknowledged responses of one session that reached it before one sent earlier by the same path.

        The design orders a session's responses by when they became durable at
        the server: the store for tiers 1 and 2 (before the webhook answers),
        the inbox's name order for tier 3. Each stream sends one response after
        the previous one's receipt, so within each path durable order is send
        order. Across paths (a file written during a fault, a webhook after it)
        no order is promised.
        """
        groups: dict[tuple[str, str], list[tuple[int, float, str]]] = {}
        for rid, sent in self.sent.items():
            arrival = first.get(rid)
            if arrival is None or not sent.acked or sent.tries > 1:
                continue
            path = "inbox" if arrival.tier == 3 else "store"
            groups.setdefault((sent.session, path), []).append((sent.index, arrival.at, rid))
        inversions: list[str] = []
        for items in groups.values():
            items.sort()
            latest, latest_id = -math.inf, ""
            for _, at, rid in items:
                if at < latest:
                    inversions.append(f"{rid} reached the session before {latest_id}")
                elif at > latest:
                    latest, latest_id = at, rid
        return inversions
