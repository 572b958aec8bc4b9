"""The consumer loop over any :class:`~mcp_cascade.queue.Queue`: claim → engine → ack.

The engine makes each response durable in the session's store (deduplicated by
id, the same :meth:`Engine.receive` every tier meets) before the queue hears an
ack, so a crash between the two is a redelivery the store absorbs as a
duplicate. What cannot become a response is quarantined with a reason; a store
that cannot write right now sends the item back for a later try, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from mcp_cascade.delivery import Engine, Received
from mcp_cascade.errors import Poisoned, StoreUnavailable
from mcp_cascade.events import Event, Observer
from mcp_cascade.queue import Item, Quarantined, Queue

__all__ = ["OnReceived", "consume"]

OnReceived = Callable[[Item, Received], Awaitable[None]]
_CLAIM_WAIT_S = 1.0
_STORE_PAUSE_S = 0.2
_PROGRESS_EVERY_S = 3.0


async def consume(
    queue: Queue,
    engine: Engine,
    observer: Observer,
    *,
    tier: int,
    on_outcome: OnReceived | None = None,
    progress: Callable[[Item], Awaitable[None]] | None = None,
) -> None:
    """Deliver what ``queue`` holds into ``engine`` until cancelled; transport errors propagate."""
    recovered = await queue.recover()
    if recovered:
        observer.emit(
            Event(
                "recovered",
                session=engine.session,
                tier=tier,
                reason=f"{recovered} claimed by a consumer that stopped; taken again",
            )
        )
    while True:
        for entry in await queue.claim(1, _CLAIM_WAIT_S):
            if isinstance(entry, Quarantined):
                observer.emit(
                    Event("rejected", session=engine.session, tier=tier, level="error", reason=entry.reason)
                )
                await queue.nack(entry, entry.reason, permanent=True)
                continue
            try:
                outcome = await _receive(engine, entry, tier, progress)
            except Poisoned as exc:  # the message's own content: step aside, never retried
                await queue.nack(entry, str(exc), permanent=True)
                continue
            if outcome is None:
                await queue.nack(entry, "store unavailable", permanent=False)
                await anyio.sleep(_STORE_PAUSE_S)
                continue
            await queue.ack(entry)
            if on_outcome is not None:
                await on_outcome(entry, outcome)


async def _receive(
    engine: Engine, item: Item, tier: int, progress: Callable[[Item], Awaitable[None]] | None
) -> Received | None:
    outcome: Received | None = None
    poisoned: Poisoned | None = None
    async with anyio.create_task_group() as tg:
        if progress is not None:
            tg.start_soon(_keep_alive, progress, item)
        try:
            outcome = await engine.receive(item.response, tier)
        except StoreUnavailable:
            outcome = None
        except Poisoned as exc:  # raised after the task group, so it is not wrapped in a group
            poisoned = exc
        tg.cancel_scope.cancel()
    if poisoned is not None:
        raise poisoned
    return outcome


async def _keep_alive(progress: Callable[[Item], Awaitable[None]], item: Item) -> None:
    while True:
        await anyio.sleep(_PROGRESS_EVERY_S)
        await progress(item)
