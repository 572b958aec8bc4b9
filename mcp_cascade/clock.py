"""Time as a dependency: components read the clock they were given, never ``time`` itself.

A :class:`Clock` has three faces: ``monotonic`` for deadlines, budgets and
latencies; ``wall`` for what is shown to people and written to disk (ages,
timestamps); and ``sleep`` for waits. The system clock is the default
everywhere; :class:`FakeClock` lets failover, budgets and breakers be tested
in-process without waiting, and without depending on how busy the machine is.
Timeouts enforced by the event loop (``anyio.fail_after``) stay on real time:
they are safety nets, not the logic under test.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.lowlevel

__all__ = ["SYSTEM", "Clock", "FakeClock", "Random", "SystemClock", "system_random"]

Random = Callable[[], float]
"""A source of uniform draws in [0, 1) (jitter); injected so tests can fix the draws."""


class Clock(Protocol):
    """What a component needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, latencies)."""

    def wall(self) -> float:
        """Unix time (ages shown to people, timestamps on disk)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        """``time.monotonic``."""
        return time.monotonic()

    def wall(self) -> float:
        """``time.time``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``anyio.sleep``."""
        await anyio.sleep(seconds)


SYSTEM: Clock = SystemClock()


def system_random() -> Random:
    """A fresh generator's draws (each component its own, so none shares a sequence)."""
    return random.Random().random


class FakeClock:
    """A clock that moves only when told to, or when something sleeps on it.

    ``sleep`` advances the clock by the time asked and yields to the event loop
    once, so a retry schedule plays out at once and its waits are exact.
    """

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self.now = monotonic
        self._wall_offset = wall - monotonic
        self.slept: list[float] = []

    def monotonic(self) -> float:
        """The fake time."""
        return self.now

    def wall(self) -> float:
        """The fake time as unix time (it moves with ``monotonic``)."""
        return self._wall_offset + self.now

    def advance(self, seconds: float) -> None:
        """Move time forward (never back)."""
        self.now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        """Record the wait, advance by it, and let other tasks run."""
        self.slept.append(seconds)
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()
