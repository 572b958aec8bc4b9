"""The one tally: what was sent, what each session received, and how often (pure bookkeeping).

The demo and the soak both count the same things from the same two lists:
responses sent (each for one session) and frames received (each carrying a
response id, the tier, and whether it was flagged ``redelivered``). They add
their own record of what was sent (the soak's receipts and pacing, the demo's
steps) by subclassing :class:`Tally` with their own sent record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class SentRecord(Protocol):
    """What the tally needs of a sent response: its id and the session it is for."""

    @property
    def response_id(self) -> str: ...

    @property
    def session(self) -> str: ...


S = TypeVar("S", bound=SentRecord)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One frame a session received for a response (``at``: perf_counter time on the client side)."""

    response_id: str
    session: str
    tier: int | None
    at: float
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Counts:
    """Sent against received, response by response (each tuple names ids, once each, in sent order).

    A repeat is a duplicate unless flagged ``redelivered`` (a server killed
    between writing a frame and recording it: the documented unknown outcome);
    flagged repeats are listed apart and never count as duplicates.
    """

    sent: int
    delivered: int
    missing: tuple[str, ...]
    duplicated: tuple[str, ...]
    redelivered: tuple[str, ...]
    misrouted: tuple[str, ...]
    unexpected: tuple[str, ...]
    first: dict[str, Arrival]  # the first arrival of each response that arrived

    @property
    def once(self) -> bool:
        """Nothing missing, repeated without a flag, misrouted or unexpected."""
        return not (self.missing or self.duplicated or self.misrouted or self.unexpected)

    def per_tier(self) -> Counter[int]:
        """How many responses each tier carried (by each one's first arrival)."""
        return Counter(a.tier or 0 for a in self.first.values())


class Tally(Generic[S]):
    """The responses sent (by id) and every arrival, in the order they were recorded."""

    def __init__(self) -> None:
        self.sent: dict[str, S] = {}
        self.arrivals: list[Arrival] = []

    def expect(self, sent: S) -> None:
        """Record a response sent (a second record for the same id replaces the first)."""
        self.sent[sent.response_id] = sent

    def arrive(self, arrival: Arrival) -> None:
        """Record a frame a session received."""
        self.arrivals.append(arrival)

    def first(self, response_id: str) -> Arrival | None:
        """The first arrival of ``response_id``."""
        return next((a for a in self.arrivals if a.response_id == response_id), None)

    def seen(self) -> set[str]:
        """Every response id that reached a session at least once."""
        return {a.response_id for a in self.arrivals}

    def outstanding(self, ids: Iterable[str] | None = None) -> list[str]:
        """Responses sent (or those of ``ids``) that no session has received yet."""
        arrived = self.seen()
        return [r for r in (self.sent if ids is None else ids) if r not in arrived]

    def counts(self) -> Counts:
        """Compare what was sent with what each session received, arrivals taken in time order."""
        first: dict[str, Arrival] = {}
        duplicated: dict[str, None] = {}
        redelivered: dict[str, None] = {}
        misrouted: dict[str, None] = {}
        unexpected: dict[str, None] = {}
        for arrival in sorted(self.arrivals, key=lambda a: a.at):
            rid = arrival.response_id
            sent = self.sent.get(rid)
            if sent is None:
                unexpected[rid] = None
                continue
            if arrival.session != sent.session:
                misrouted[rid] = None
            if rid not in first:
                first[rid] = arrival
            else:
                (redelivered if arrival.redelivered else duplicated)[rid] = None
        return Counts(
            sent=len(self.sent),
            delivered=sum(1 for r in self.sent if r in first),
            missing=tuple(r for r in self.sent if r not in first),
            duplicated=tuple(duplicated),
            redelivered=tuple(redelivered),
            misrouted=tuple(misrouted),
            unexpected=tuple(unexpected),
            first=first,
        )
