"""The engine measures on the clock it is given: latencies and error times exact on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mcp_cascade.clock import FakeClock
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.store import Store
from mcp_cascade.response import Response, from_dict
from mcp_cascade.wire import Tier
from tests.cascade_helpers import Recorder
from tests.helpers import body

pytestmark = pytest.mark.anyio
T = TypeVar("T")


class SlowClient:
    """A client whose every push takes ``push_s`` on the fake clock."""

    def __init__(self, clock: FakeClock, push_s: float, fail: bool = False) -> None:
        self.clock = clock
        self.push_s = push_s
        self.fail = fail

    async def push(self, response: Response, tier: int, *, redelivered: bool) -> None:
        self.clock.advance(self.push_s)
        if self.fail:
            raise BrokenPipeError("the client went away")


async def test_the_delivered_answer_and_the_pushed_event_carry_the_fake_clocks_latency(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    events = Recorder()
    store = Store.open(tmp_path / "state.db")
    try:
        engine = Engine(store, "s", events, clock=clock)
        async with engine.running():
            engine.attach(SlowClient(clock, 0.25))
            received = await engine.receive(from_dict(body(id="c:1")), Tier.WEBHOOK)
    finally:
        store.close()
    assert (received.status, received.tier) == ("delivered", Tier.WEBHOOK)
    assert received.latency_ms == pytest.approx(250.0)
    (pushed,) = events.named("pushed")
    assert pushed.latency_ms == pytest.approx(250.0)


async def test_a_broken_client_is_recorded_at_the_fake_clocks_wall_time(tmp_path: Path) -> None:
    clock = FakeClock(wall=1_900_000_000.0)
    store = Store.open(tmp_path / "state.db")
    try:
        engine = Engine(store, "s", Recorder(), clock=clock, push_wait_s=0.5)
        async with engine.running():
            engine.attach(SlowClient(clock, 2.0, fail=True))
            received = await engine.receive(from_dict(body(id="c:2")), Tier.BRIDGE)
            assert not engine.attached
    finally:
        store.close()
    assert received.status == "queued"
    assert engine.last_push_error is not None
    at, reason = engine.last_push_error
    assert at == pytest.approx(1_900_000_002.0)
    assert "BrokenPipeError" in reason


class InlineEngine(Engine):
    """Store calls on the loop itself: the pump runs from commit to push without yielding once,
    so every receiver wakes only after its response was pushed (the worst a busy loop can do)."""

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        return fn(*args)


async def test_durable_is_recorded_before_pushed_even_when_the_receiver_wakes_late(tmp_path: Path) -> None:
    """The audit trail is causal: the pump reports ``durable`` itself, before it can push.

    Reported by the receiving caller once it woke, a push that took no turn of the
    loop (or a receiver that was slow to be scheduled, as under SIGSTOP) put
    ``pushed`` first, and the soak's audit check failed.
    """
    clock = FakeClock()
    events = Recorder()
    store = Store.open(tmp_path / "state.db")
    try:
        engine = InlineEngine(store, "s", events, clock=clock)
        async with engine.running():
            engine.attach(SlowClient(clock, 0.0))
            ids = [f"c:{n}" for n in range(20)]
            await engine.receive_many([from_dict(body(id=i)) for i in ids], Tier.FILE)
            await events.wait_for(lambda: len(events.named("pushed")) == len(ids))
    finally:
        store.close()
    order = [(e.event, e.response_id) for e in events.events if e.event in ("durable", "pushed")]
    for rid in ids:
        assert order.index(("durable", rid)) < order.index(("pushed", rid)), order


async def test_each_response_the_store_holds_at_start_is_recorded_as_recovered(tmp_path: Path) -> None:
    """A kill between a commit and its ``durable`` record leaves the store ahead of the audit trail:
    at the next start every undelivered response gets a ``recovered`` record before it is pushed."""
    store = Store.open(tmp_path / "state.db")
    try:
        async with Engine(store, "s", Recorder()).running() as first:  # no client: they stay pending
            await first.receive_many([from_dict(body(id=f"held:{n}")) for n in range(3)], Tier.WEBHOOK)
        events = Recorder()
        engine = Engine(store, "s", events)
        async with engine.running():
            engine.attach(SlowClient(FakeClock(), 0.0))
            await events.wait_for(lambda: len(events.named("pushed")) == 3)
    finally:
        store.close()
    recovered = events.named("recovered")
    assert [e.response_id for e in recovered] == ["held:0", "held:1", "held:2"]
    assert all(e.tier == Tier.WEBHOOK and "waiting in the store" in str(e.reason) for e in recovered)
    order = [(e.event, e.response_id) for e in events.events if e.event in ("recovered", "pushed")]
    assert order.index(("recovered", "held:2")) < order.index(("pushed", "held:0"))
