"""Flood control: token buckets at Telegram's limits, priorities, and 429s honoured to the end."""

from __future__ import annotations

from collections import deque

import anyio
import anyio.lowlevel
import pytest

from mcp_cascade.bridge.flood import FloodLimits, Gate, Priority, Scheduler
from mcp_cascade.clock import FakeClock

pytestmark = pytest.mark.anyio


def _schedule(gate: Gate, chat: int, n: int) -> list[float]:
    """When ``n`` messages to ``chat`` go, sent as soon as the gate allows (virtual time)."""
    now, times = 0.0, []
    for _ in range(n):
        now = max(now, gate.ready_at(chat, now))
        gate.take(chat, now)
        times.append(now)
    return times


def _most_in_window(times: list[float], seconds: float) -> int:
    window: deque[float] = deque()
    most = 0
    for t in times:
        window.append(t)
        while window[0] <= t - seconds:
            window.popleft()
        most = max(most, len(window))
    return most


def test_a_private_chat_gets_its_burst_then_one_message_a_second() -> None:
    times = _schedule(Gate(FloodLimits()), 42, 100)
    assert times[2] < 0.1  # three at once (the bot-wide bucket spaces them by 1/30 s)
    assert times[3:6] == pytest.approx([1.0, 2.0, 3.0])
    assert times[-1] == pytest.approx(97.0)


def test_a_group_never_gets_more_than_twenty_in_any_minute() -> None:
    times = _schedule(Gate(FloodLimits()), -100123, 100)
    assert _most_in_window(times, 60.0) <= 20
    assert times[1] - times[0] == pytest.approx(3.0)


def test_all_chats_together_stay_under_thirty_a_second() -> None:
    gate = Gate(FloodLimits())
    now, times = 0.0, []
    for i in range(300):
        chat = 1 + i  # 300 different people: only the bot-wide bucket limits
        now = max(now, gate.ready_at(chat, now))
        gate.take(chat, now)
        times.append(now)
    assert _most_in_window(times, 1.0) <= 31


def test_a_429_blocks_the_chat_exactly_until_retry_after() -> None:
    gate = Gate(FloodLimits())
    gate.block(42, 12.5, now=0.5)
    assert gate.ready_at(42, 0.5) == 12.5
    assert gate.ready_at(42, 12.4999) == 12.5
    assert gate.ready_at(43, 0.5) == 0.5  # other chats are not held up


async def test_retry_after_is_waited_out_in_full_never_early() -> None:
    clock = FakeClock(0.0)
    scheduler = Scheduler(FloodLimits(burst=1), clock=clock)
    await scheduler.turn(42)
    until = scheduler.retry_after(42, 7.0)
    await scheduler.turn(42)
    assert clock.now >= until == 7.0


async def test_urgent_messages_overtake_a_long_reply_waiting_for_its_turn() -> None:
    clock = FakeClock(0.0)
    scheduler = Scheduler(FloodLimits(burst=1), clock=clock)
    order: list[str] = []

    async def send(name: str, priority: Priority) -> None:
        await scheduler.turn(42, priority)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(send, f"part{i}", Priority.BULK)
        tg.start_soon(send, "permission", Priority.URGENT)  # queued while part1 waits for its token
    assert order == ["part0", "permission", "part1", "part2", "part3"]
    assert clock.now == pytest.approx(4.0)  # one a second all the same
