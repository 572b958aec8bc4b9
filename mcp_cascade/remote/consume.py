"""The consumer loop over any :class:`~mcp_cascade.queue.Queue`: claim a batch → engine → acks.

The engine makes each response durable in the session's store (deduplicated by
id, the same :meth:`Engine.receive` every tier meets) before the queue hears an
ack, so a crash between the two is a redelivery the store absorbs as a
duplicate. A batch's responses enter the engine in queue order (group commits;
the store's sequence orders the pushes); once the engine holds them all, their
acks go out together, each followed by its outcome (the session's receipt),
while the next batch is fetched and stored.
What cannot become a response is quarantined with a reason; when the store
cannot write right now, that item and every later one of the batch go back
for a later try, so nothing overtakes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from mcp_cascade.errors import Poisoned, StoreUnavailable, unwrap
from mcp_cascade.events import Event, Observer
from mcp_cascade.queue import Item, Queue, Unusable
from mcp_cascade.receive.delivery import Engine, Received

__all__ = ["OnReceived", "consume"]

OnReceived = Callable[[Item, Received], Awaitable[None]]
_CLAIM_WAIT_S = 1.0
_BATCH = 64
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
    try:
        async with anyio.create_task_group() as acking:
            previous = anyio.Event()
            previous.set()
            while True:
                items = await _claim(queue, engine, observer, tier)
                if not items:
                    continue
                taken, held_back = await _settle(queue, items, await _receive(engine, items, tier, progress))
                # The store holds the batch: its acks go out while the next batch is fetched and stored
                # (a pipeline: sender and session work at once), one batch of acks in flight at a time.
                await previous.wait()
                previous = anyio.Event()
                acking.start_soon(_ack, queue, taken, on_outcome, previous)
                if held_back:
                    await anyio.sleep(_STORE_PAUSE_S)
    except BaseExceptionGroup as group:  # the caller handles a transport error, not the task group around it
        raise unwrap(group) from None


async def _claim(queue: Queue, engine: Engine, observer: Observer, tier: int) -> list[Item]:
    """The next batch, what can never become a response quarantined on the way."""
    items: list[Item] = []
    for entry in await queue.claim(_BATCH, _CLAIM_WAIT_S):
        if isinstance(entry, Unusable):
            why = entry.reason
            observer.emit(Event("rejected", session=engine.session, tier=tier, level="error", reason=why))
            await queue.nack(entry, entry.reason, permanent=True)
        else:
            items.append(entry)
    return items


async def _settle(
    queue: Queue, items: list[Item], outcomes: list[Received | Poisoned | None]
) -> tuple[list[tuple[Item, Received]], bool]:
    """Nack what the store did not take; the stored items to ack, and whether any was held back."""
    held_back = False
    taken: list[tuple[Item, Received]] = []
    for item, outcome in zip(items, outcomes, strict=True):
        if held_back or outcome is None:
            held_back = True  # this one, or one before it, is not in the store: none may overtake it
            await queue.nack(item, "store unavailable", permanent=False)
        elif isinstance(outcome, Poisoned):  # the message's own content: step aside, never retried
            await queue.nack(item, str(outcome), permanent=True)
        else:
            taken.append((item, outcome))
    return taken, held_back


async def _receive(
    engine: Engine, items: list[Item], tier: int, progress: Callable[[Item], Awaitable[None]] | None
) -> list[Received | Poisoned | None]:
    """Each item through :meth:`Engine.receive`, together; ``None`` where the store could not write.

    Each receive is started only when the one before it has enqueued its response (``start``
    returns once the task yields, and it first yields inside the receive, after the enqueue),
    so the store commits (and pushes) them in queue order.
    """
    outcomes: list[Received | Poisoned | None] = [None] * len(items)

    async def one(index: int, item: Item, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        try:
            outcomes[index] = await engine.receive(item.response, tier)
        except StoreUnavailable:
            outcomes[index] = None
        except Poisoned as exc:
            outcomes[index] = exc

    async with anyio.create_task_group() as keep:
        if progress is not None:
            keep.start_soon(_keep_alive, progress, items)
        async with anyio.create_task_group() as tg:
            for index, item in enumerate(items):
                await tg.start(one, index, item)
        keep.cancel_scope.cancel()
    return outcomes


async def _ack(
    queue: Queue, taken: list[tuple[Item, Received]], on_outcome: OnReceived | None, settled: anyio.Event
) -> None:
    """Ack every stored item of a batch at once, each followed by its outcome; the first failure raises.

    The store already holds them all in order, so the order of their acks cannot reorder a push; one
    after the other, each waiting for the server's confirmation, a batch of n cost n round trips
    before its last receipt could leave.
    """
    failures: list[Exception] = []

    async def one(item: Item, outcome: Received) -> None:
        try:
            await queue.ack(item)
        except Exception as exc:  # the task's boundary: raised below, once every ack has settled
            failures.append(exc)
            return
        if on_outcome is not None:
            await on_outcome(item, outcome)

    try:
        async with anyio.create_task_group() as tg:
            for item, outcome in taken:
                tg.start_soon(one, item, outcome)
    finally:
        settled.set()
    if failures:
        raise failures[0]


async def _keep_alive(progress: Callable[[Item], Awaitable[None]], items: list[Item]) -> None:
    while True:
        await anyio.sleep(_PROGRESS_EVERY_S)
        for item in items:
            await progress(item)
