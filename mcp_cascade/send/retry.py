"""Exponential backoff with jitter inside a budget: pure logic, clock and randomness injected.

The n-th delay is drawn from ``[d/2, d]`` with ``d = min(cap, initial * factor**n)``
("equal jitter": spread enough that many senders do not retry in step, never
longer than the schedule says). The budget is never overrun: a delay is cut so
that one more attempt of ``reserve_s`` still fits before the deadline, and when
none fits the schedule is spent. tenacity's ``stop_after_delay`` overran a
0.5 s budget by half here, which is why this is a few lines of our own.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """The delays before the attempts after the first: 100 ms, doubling, at most 2 s by default."""

    initial_s: float = 0.1
    factor: float = 2.0
    cap_s: float = 2.0

    def ceiling(self, n: int) -> float:
        """The longest the n-th delay (from 0) can be."""
        return min(self.cap_s, self.initial_s * self.factor ** min(n, 64))

    def delay(self, n: int, draw: float) -> float:
        """The n-th delay for a uniform ``draw`` in [0, 1)."""
        top = self.ceiling(n)
        return top / 2 + top / 2 * draw


class RetrySchedule:
    """The waits of one retried operation within ``budget_s``, measured from construction."""

    def __init__(
        self,
        budget_s: float,
        *,
        backoff: Backoff | None = None,
        reserve_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.reserve_s = reserve_s
        self._clock = clock
        self._random = random
        self.deadline = clock() + budget_s
        self.delays = 0

    def remaining(self) -> float:
        """Time left in the budget (never negative)."""
        return max(0.0, self.deadline - self._clock())

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt, or None when no attempt fits any more."""
        room = self.deadline - self._clock() - self.reserve_s
        if room < 0:
            return None
        delay = self.backoff.delay(self.delays, self._random())
        self.delays += 1
        return min(delay, room)
