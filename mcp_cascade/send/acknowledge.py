"""Tier 2's direct acknowledgment to the person: in the background, retried, never blocking delivery.

When tier 1 has not taken a response, the bridge tells the person their
answer is taken care of (in Telegram) while the walk goes on. The hook is the
embedding bridge's code, so any failure of it is retried on the backoff,
within the overall timeout; the outcome is reported as ``acknowledged``.
"""

from __future__ import annotations

from typing import Any, Protocol

import anyio

from mcp_cascade.clock import Clock, Random
from mcp_cascade.events import Event, EventName, Observer
from mcp_cascade.response import Response
from mcp_cascade.send.retry import Backoff, RetrySchedule
from mcp_cascade.wire import Tier

__all__ = ["AckHook", "acknowledge"]


class AckHook(Protocol):
    """Tier 2's direct acknowledgment to the person (the bridge answers in Telegram)."""

    async def __call__(self, response: Response, session: str, reason: str) -> None:
        """Tell the person their answer is taken care of; raise to have it retried."""


async def acknowledge(
    hook: AckHook,
    response: Response,
    session: str,
    reason: str,
    *,
    budget_s: float,
    clock: Clock,
    random: Random,
    observer: Observer,
) -> None:
    """Run ``hook`` until it succeeds or ``budget_s`` is spent; report how it ended."""

    def emit(name: EventName, **kw: Any) -> None:
        observer.emit(
            Event(
                name,
                tier=Tier.BRIDGE,
                response_id=response.id,
                correlation_id=response.correlation_id,
                session=session,
                **kw,
            )
        )

    schedule = RetrySchedule(budget_s, reserve_s=Backoff().initial_s, clock=clock.monotonic, random=random)
    tries = 0
    while True:
        tries += 1
        started = clock.monotonic()
        try:
            with anyio.fail_after(max(schedule.remaining(), 0.001)):
                await hook(response, session, reason)
        except Exception as exc:  # the hook is the embedding bridge's code: any failure is retried
            error = f"{type(exc).__name__}: {exc}"
            emit("ack_retry", level="debug", reason=error)
        else:
            latency_ms = (clock.monotonic() - started) * 1000
            emit("acknowledged", latency_ms=latency_ms, fields={"ok": True, "tries": tries})
            return
        delay = schedule.next_delay()
        if delay is None:
            gave_up = f"gave up after {tries} tries: {error}"
            emit("acknowledged", level="warning", reason=gave_up, fields={"ok": False, "tries": tries})
            return
        await clock.sleep(delay)
