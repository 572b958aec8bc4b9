"""A circuit breaker per session: a pure state machine with an injected clock.

``closed`` lets every attempt through and counts failures since the last
success. It opens after ``threshold`` failures, or sooner after ``slow_after``
slow answers (no answer within the webhook budget): a timeout costs the whole
budget, so a slow tier 1 is given up on before a quickly refusing one.
``open`` rejects until ``next_probe_at``; then ``half_open`` lets exactly one
probe through. The probe's success closes it; its failure opens it again with
the wait doubled, up to ``max_reset_s``.

The breaker never sleeps and never reads the time itself: the clock is
injected, so every transition is tested without waiting. Each transition is
reported to ``on_change`` (the sender turns it into an event for metrics and
logs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
Permit = Literal["pass", "probe", "reject"]


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When the breaker opens and how long it waits before probing."""

    threshold: int = 5
    slow_after: int = 3
    reset_s: float = 1.0
    max_reset_s: float = 16.0


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker's state at one moment.

    ``failures`` and ``slow`` count since the last success; ``next_probe_at``
    (on the breaker's clock) is set while open; ``reason`` says why it last
    opened (``failures`` or ``slow``), empty while closed.
    """

    state: BreakerState
    failures: int
    slow: int
    next_probe_at: float | None
    reset_s: float
    reason: str


class Breaker:
    """Decides whether an attempt may go to tier 1 of one session."""

    def __init__(
        self,
        settings: BreakerSettings,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerSnapshot], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._state: BreakerState = "closed"
        self._failures = 0
        self._slow = 0
        self._reset_s = settings.reset_s
        self._next_probe_at: float | None = None
        self._reason = ""

    @property
    def state(self) -> BreakerState:
        """The current state, without advancing it (see :meth:`allow`)."""
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        """The current state and counters."""
        return BreakerSnapshot(
            self._state, self._failures, self._slow, self._next_probe_at, self._reset_s, self._reason
        )

    def configure(self, settings: BreakerSettings) -> None:
        """Apply new settings from now on (a reloaded configuration); the state is kept."""
        if settings == self.settings:
            return
        self.settings = settings
        self._reset_s = (
            settings.reset_s if self._state == "closed" else min(self._reset_s, settings.max_reset_s)
        )

    def allow(self) -> Permit:
        """``pass`` while closed; ``probe`` for the one attempt a due half-open lets through, else ``reject``.

        An open breaker becomes half-open here, on the first call after its wait.
        """
        if self._state == "closed":
            return "pass"
        if self._state == "open" and self._next_probe_at is not None and self._clock() >= self._next_probe_at:
            self._move("half_open")
            return "probe"
        return "reject"

    def success(self, permit: Permit) -> None:
        """An attempt made with ``permit`` got an answer."""
        if self._state == "closed":
            self._failures = self._slow = 0
        elif self._state == "half_open" and permit == "probe":
            self._failures = self._slow = 0
            self._reset_s = self.settings.reset_s
            self._next_probe_at = None
            self._reason = ""
            self._move("closed")
        # Results of attempts that started before the breaker opened say nothing about the probe.

    def failure(self, permit: Permit, *, slow: bool = False) -> None:
        """An attempt made with ``permit`` failed; ``slow`` when it got no answer within its budget."""
        if self._state == "closed":
            self._count(slow)
            if self._slow >= self.settings.slow_after:
                self._open("slow", self.settings.reset_s)
            elif self._failures >= self.settings.threshold:
                self._open("failures", self.settings.reset_s)
        elif self._state == "half_open" and permit == "probe":
            self._count(slow)
            self._open(self._reason or "failures", min(self._reset_s * 2, self.settings.max_reset_s))

    def abandon(self, permit: Permit) -> None:
        """The attempt made with ``permit`` ended without a result (cancelled): free the probe slot."""
        if self._state == "half_open" and permit == "probe":
            self._next_probe_at = self._clock()
            self._move("open")

    def reset(self) -> None:
        """Close the breaker at once (the session's server was replaced by a new one)."""
        self._failures = self._slow = 0
        self._reset_s = self.settings.reset_s
        self._next_probe_at = None
        self._reason = ""
        if self._state != "closed":
            self._move("closed")

    def _count(self, slow: bool) -> None:
        self._failures += 1
        if slow:
            self._slow += 1

    def _open(self, reason: str, wait_s: float) -> None:
        self._reason = reason
        self._reset_s = wait_s
        self._next_probe_at = self._clock() + wait_s
        self._move("open")

    def _move(self, state: BreakerState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(self.snapshot())
