"""The circuit breaker as a pure state machine, driven by a fake clock: no sleeping."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from mcp_cascade.send.breaker import Breaker, BreakerSettings, BreakerSnapshot, Permit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(breaker: Breaker) -> str:
    return breaker.state


def make(
    threshold: int = 5, slow_after: int = 3, reset_s: float = 1.0, max_reset_s: float = 16.0
) -> tuple[Breaker, Clock, list[BreakerSnapshot]]:
    clock = Clock()
    changes: list[BreakerSnapshot] = []
    breaker = Breaker(BreakerSettings(threshold, slow_after, reset_s, max_reset_s), clock, changes.append)
    return breaker, clock, changes


def test_it_opens_after_the_threshold_of_consecutive_failures_and_not_before() -> None:
    breaker, clock, changes = make(threshold=5)
    for _ in range(4):
        assert breaker.allow() == "pass"
        breaker.failure("pass")
    assert state(breaker) == "closed"
    assert changes == []
    breaker.failure("pass")
    assert state(breaker) == "open"
    assert breaker.allow() == "reject"
    (opened,) = changes
    assert opened.state == "open"
    assert opened.reason == "failures"
    assert opened.next_probe_at == clock.now + 1.0


def test_a_success_starts_the_count_again() -> None:
    breaker, _, _ = make(threshold=3)
    breaker.failure("pass")
    breaker.failure("pass")
    breaker.success("pass")
    breaker.failure("pass")
    breaker.failure("pass")
    assert state(breaker) == "closed"
    assert breaker.snapshot().failures == 2


def test_slow_answers_open_it_sooner_than_other_failures() -> None:
    breaker, _, changes = make(threshold=5, slow_after=3)
    for _ in range(3):
        breaker.failure("pass", slow=True)
    assert state(breaker) == "open"
    assert changes[-1].reason == "slow"
    assert changes[-1].slow == 3


def test_half_open_lets_exactly_one_probe_through_once_the_wait_is_over() -> None:
    breaker, clock, _ = make(threshold=1, reset_s=1.0)
    breaker.failure("pass")
    clock.now += 0.999
    assert breaker.allow() == "reject"
    clock.now += 0.001
    assert breaker.allow() == "probe"
    assert state(breaker) == "half_open"
    assert [breaker.allow() for _ in range(10)] == ["reject"] * 10


def test_a_successful_probe_closes_it_and_restores_the_first_wait() -> None:
    breaker, clock, changes = make(threshold=1, reset_s=1.0)
    breaker.failure("pass")
    for _ in range(2):  # two failed probes: the wait grows to 4 s
        clock.now += breaker.snapshot().reset_s
        assert breaker.allow() == "probe"
        breaker.failure("probe")
    assert breaker.snapshot().reset_s == 4.0
    clock.now += 4.0
    assert breaker.allow() == "probe"
    breaker.success("probe")
    assert state(breaker) == "closed"
    assert breaker.allow() == "pass"
    assert [c.state for c in changes] == [
        "open",
        "half_open",
        "open",
        "half_open",
        "open",
        "half_open",
        "closed",
    ]
    breaker.failure("pass")
    assert breaker.snapshot().reset_s == 1.0


def test_failed_probes_double_the_wait_up_to_the_cap() -> None:
    breaker, clock, _ = make(threshold=1, reset_s=1.0, max_reset_s=16.0)
    breaker.failure("pass")
    waits = []
    for _ in range(7):
        snap = breaker.snapshot()
        waits.append(snap.reset_s)
        assert snap.next_probe_at == clock.now + snap.reset_s
        clock.now = snap.next_probe_at
        assert breaker.allow() == "probe"
        breaker.failure("probe")
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]


def test_results_of_attempts_that_were_not_the_probe_are_ignored_while_open() -> None:
    breaker, clock, _ = make(threshold=1)
    breaker.failure("pass")
    breaker.success("pass")  # an attempt that started before it opened
    assert state(breaker) == "open"
    clock.now += 1.0
    assert breaker.allow() == "probe"
    breaker.success("pass")
    breaker.failure("pass")
    assert state(breaker) == "half_open"
    breaker.success("probe")
    assert state(breaker) == "closed"


def test_an_abandoned_probe_frees_the_slot_for_the_next_attempt() -> None:
    breaker, clock, _ = make(threshold=1)
    breaker.failure("pass")
    clock.now += 1.0
    assert breaker.allow() == "probe"
    breaker.abandon("probe")
    assert state(breaker) == "open"
    assert breaker.allow() == "probe"


def test_reset_closes_it_at_once() -> None:
    breaker, _, changes = make(threshold=1)
    breaker.failure("pass")
    breaker.reset()
    assert state(breaker) == "closed"
    assert breaker.allow() == "pass"
    assert changes[-1].state == "closed"
    assert changes[-1].next_probe_at is None


def test_new_settings_apply_to_the_next_decisions() -> None:
    breaker, _, _ = make(threshold=5)
    breaker.failure("pass")
    breaker.configure(BreakerSettings(threshold=2, slow_after=3, reset_s=1.0, max_reset_s=16.0))
    breaker.failure("pass")
    assert state(breaker) == "open"


operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0.0, 20.0)),
        st.tuples(st.sampled_from(["allow", "success", "failure", "slow", "abandon"]), st.just(0.0)),
    ),
    max_size=200,
)


@given(operations)
def test_at_most_one_probe_is_ever_outstanding_and_waits_stay_within_bounds(
    ops: list[tuple[str, float]],
) -> None:
    breaker, clock, changes = make(threshold=3, slow_after=2, reset_s=1.0, max_reset_s=16.0)
    probe_out = False
    permits: list[Permit] = []
    for op, amount in ops:
        if op == "advance":
            clock.now += amount
        elif op == "allow":
            permit = breaker.allow()
            if permit == "probe":
                assert not probe_out, "a second probe while one is in flight"
                probe_out = True
            permits.append(permit)
        elif permits:
            permit = permits.pop(0)
            if op == "success":
                breaker.success(permit)
            elif op == "abandon":
                breaker.abandon(permit)
            else:
                breaker.failure(permit, slow=op == "slow")
            if permit == "probe":
                probe_out = False
        snap = breaker.snapshot()
        assert 1.0 <= snap.reset_s <= 16.0
        if snap.state == "open":
            assert snap.next_probe_at is not None
        if snap.state == "closed":
            assert snap.next_probe_at is None
    for before, after in itertools.pairwise(changes):
        assert before.state != after.state
