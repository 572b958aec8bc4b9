"""Backoff with jitter inside a budget, driven by a fake clock and fixed draws: no sleeping."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_cascade.send.retry import Backoff, RetrySchedule


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_from_100_ms_up_to_the_2_s_cap() -> None:
    backoff = Backoff()
    assert [backoff.ceiling(n) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff.ceiling(10_000) == 2.0


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999999])
def test_jitter_keeps_each_delay_between_half_and_all_of_its_ceiling(draw: float) -> None:
    backoff = Backoff()
    for n in range(8):
        delay = backoff.delay(n, draw)
        assert backoff.ceiling(n) / 2 <= delay <= backoff.ceiling(n)
    assert backoff.delay(0, 0.0) == pytest.approx(0.05)
    assert backoff.delay(0, 0.999999) == pytest.approx(0.1, abs=1e-6)


def test_draws_spread_the_delays_across_the_whole_jitter_range() -> None:
    rng = random.Random(7)
    delays = [Backoff().delay(2, rng.random()) for _ in range(1000)]
    assert min(delays) < 0.22
    assert max(delays) > 0.38


def test_the_schedule_follows_the_backoff_while_the_budget_allows() -> None:
    clock = Clock()
    schedule = RetrySchedule(10.0, clock=clock, random=lambda: 1.0)
    delays = []
    for _ in range(5):
        delay = schedule.next_delay()
        assert delay is not None
        delays.append(delay)
        clock.now += delay
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


def test_a_delay_is_cut_so_one_more_attempt_still_fits_and_then_the_schedule_is_spent() -> None:
    clock = Clock()
    schedule = RetrySchedule(0.5, reserve_s=0.1, clock=clock, random=lambda: 1.0)
    clock.now += 0.35  # attempts so far used 350 ms
    assert schedule.next_delay() == pytest.approx(0.05)
    clock.now += 0.05 + 0.1  # the wait, then an attempt that used its whole reserve
    assert schedule.next_delay() is None
    assert schedule.remaining() == 0.0


@given(
    budget=st.floats(0.01, 5.0),
    reserve=st.floats(0.0, 1.0),
    draws=st.lists(st.floats(0.0, 0.999999), min_size=1, max_size=50),
    attempt_fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50),
)
def test_the_budget_is_never_overrun_whatever_the_draws_and_attempt_times(
    budget: float, reserve: float, draws: list[float], attempt_fractions: list[float]
) -> None:
    clock = Clock()
    # As many draws as the schedule asks for: attempts that take no time can ask for many.
    draw_iter = itertools.cycle(draws)
    schedule = RetrySchedule(budget, reserve_s=reserve, clock=clock, random=lambda: next(draw_iter))
    start = clock.now
    for fraction in attempt_fractions * 20:
        # An attempt runs for at most its timeout: the reserve, cut to what is left.
        clock.now += min(reserve, schedule.remaining()) * fraction
        delay = schedule.next_delay()
        if delay is None:
            break
        assert delay >= 0
        clock.now += delay
        assert clock.now - start <= budget + 1e-9
    assert clock.now - start <= budget + 1e-9
