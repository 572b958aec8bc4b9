"""The receiving engine: every tier meets here.

receive: dedup and persist (one durable commit) → answer. A single push loop
then takes pending responses in the order they became durable, marks them
``pushing`` (durable), writes them to the client and marks them delivered.
Ordering, effectively-once and crash recovery all follow from that one loop
and the store's states.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Protocol, TypeVar

import anyio
import anyio.to_thread

from mcp_cascade.clock import SYSTEM, Clock
from mcp_cascade.errors import Poisoned, StoreUnavailable
from mcp_cascade.events import Event, EventName, Observer
from mcp_cascade.receive.store import Accepted, Store, Stored
from mcp_cascade.response import Response

T = TypeVar("T")
_BATCH = 64
# What a push raises when the frame cannot be built from this response (not a broken connection).
_CONTENT_ERRORS = (UnicodeError, TypeError, OverflowError)


class Pusher(Protocol):
    """Writes one response into the client session (the MCP connection)."""

    async def push(self, response: Response, tier: int, *, redelivered: bool) -> None:
        """Send the notification; raise if the connection is gone."""


@dataclass(frozen=True, slots=True)
class Received:
    """What happened to a received response, as the webhook answers it."""

    status: Literal["delivered", "queued", "duplicate"]
    response_id: str
    correlation_id: str
    tier: int
    latency_ms: float
    first_tier: int | None = None  # a duplicate's: the tier that brought the response first


# Responses recorded one by one as recovered at start (more are still delivered, unrecorded).
_RECOVER_RECORDS = 10_000


@dataclass(eq=False, slots=True)
class _Slot:
    """One response on its way through the pump."""

    response: Response
    tier: int
    start: float
    durable: anyio.Event = field(default_factory=anyio.Event)
    pushed: anyio.Event = field(default_factory=anyio.Event)
    accepted: Accepted | None = None
    outcome: Received | None = None  # set with ``durable`` when it was committed (or recognised)
    error: StoreUnavailable | Poisoned | None = None


class Engine:
    """Dedup → persist → push → record, for one session.

    Use ``async with engine.running()``: it owns the pump, a single task that
    group-commits whatever arrived together (one fsync for the lot), claims
    the oldest pending responses in the same transaction, and pushes them in
    durable order. ``attach`` a pusher once the client has initialized; until
    then responses are kept (``queued``) and pushed, in order, on attach.
    """

    def __init__(
        self,
        store: Store,
        session: str,
        observer: Observer,
        *,
        push_wait_s: float = 1.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self.store = store
        self._clock = clock
        self.session = session
        self._observer = observer
        self._push_wait_s = push_wait_s
        self._pusher: Pusher | None = None
        self._wake = anyio.Event()
        self._arrival = anyio.Event()
        self._queue: list[_Slot] = []
        self._in_flight: dict[int, _Slot] = {}
        self._limiter = anyio.CapacityLimiter(1)
        self.last_push_error: tuple[float, str] | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Engine]:
        """Recover interrupted pushes, then run the pump until exit."""
        await self._io(self.store.recover)
        # One record per response the store holds undelivered at start: the trail then shows it durable
        # even when a kill fell between its commit and its ``durable`` record.
        for held in await self._io(self.store.pending, _RECOVER_RECORDS):
            why = "caught mid-push: redelivered, flagged" if held.redelivered else "waiting in the store"
            self._emit("recovered", held.response, tier=held.tier, reason=f"at start-up, {why}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump)
            yield self
            tg.cancel_scope.cancel()

    @property
    def attached(self) -> bool:
        """Whether a client is attached and receiving pushes."""
        return self._pusher is not None

    def attach(self, pusher: Pusher) -> None:
        """Start pushing into ``pusher``; everything pending goes first, in order."""
        self._pusher = pusher
        self._wake.set()

    def detach(self) -> None:
        """Stop pushing (the client went away); responses keep being accepted."""
        self._pusher = None

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _emit(self, name: EventName, response: Response | None = None, **kw: object) -> None:
        self._observer.emit(
            Event(
                name,
                response_id=response.id if response else None,
                correlation_id=response.correlation_id if response else None,
                session=self.session,
                **kw,  # type: ignore[arg-type]
            )
        )

    async def receive(self, response: Response, tier: int) -> Received:
        """Make ``response`` durable (or recognise it), then wait briefly for its push.

        Raises StoreUnavailable when it cannot be made durable: nothing was
        acknowledged, so the sender must fall back. Raises Poisoned when this
        response itself cannot be stored (it was quarantined; no tier would help).
        """
        slot = self._enqueue([response], tier)[0]
        await slot.durable.wait()
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        outcome = slot.outcome
        if outcome.status == "duplicate":
            return outcome
        if self._pusher is None and not slot.pushed.is_set():
            self._emit(
                "queued",
                response,
                tier=tier,
                latency_ms=outcome.latency_ms,
                reason="no MCP client attached yet",
            )
            return outcome
        with anyio.move_on_after(self._push_wait_s):
            await slot.pushed.wait()
        elapsed = (self._clock.monotonic() - slot.start) * 1000
        if not slot.pushed.is_set():
            self._emit(
                "queued",
                response,
                tier=tier,
                latency_ms=elapsed,
                reason=f"not pushed within {self._push_wait_s:g}s; it stays pending",
            )
            return Received("queued", response.id, response.correlation_id, tier, elapsed)
        return Received("delivered", response.id, response.correlation_id, tier, elapsed)

    async def receive_many(
        self, responses: Sequence[Response], tier: int
    ) -> list[Received | StoreUnavailable | Poisoned]:
        """Make several responses durable together, in this order, without waiting for their pushes.

        For a producer that keeps its own durable copy until this returns (the
        inbox): one group commit for the lot. Each result is a Received
        (``queued`` or ``duplicate``), the StoreUnavailable that kept that
        response from being made durable (the caller keeps its copy), or the
        Poisoned error that set it aside (the caller quarantines its copy).
        """
        slots = self._enqueue(responses, tier)
        results: list[Received | StoreUnavailable | Poisoned] = []
        for slot in slots:
            await slot.durable.wait()
            if slot.error is not None:
                results.append(slot.error)
                continue
            assert slot.outcome is not None
            outcome = slot.outcome
            if outcome.status == "queued" and self._pusher is None and not slot.pushed.is_set():
                self._emit(
                    "queued",
                    slot.response,
                    tier=tier,
                    latency_ms=outcome.latency_ms,
                    reason="no MCP client attached yet",
                )
            results.append(outcome)
        return results

    def _enqueue(self, responses: Sequence[Response], tier: int) -> list[_Slot]:
        now = self._clock.monotonic()
        slots = [_Slot(r, tier, now) for r in responses]
        for slot in slots:
            self._emit("received", slot.response, tier=tier, level="debug")
        self._queue.extend(slots)
        self._wake.set()
        return slots

    def _settle(self, slot: _Slot, accepted: Accepted) -> None:
        """The pump committed ``slot``: report it (a duplicate, or durable), then wake its caller.

        Reported here, by the pump, before it can push the response: reported by the
        caller once it wakes, ``durable`` could follow ``pushed`` in the audit trail.
        """
        slot.accepted = accepted
        if accepted.new:
            self._in_flight[accepted.seq] = slot
        slot.outcome = self._outcome(slot)
        slot.durable.set()

    def _outcome(self, slot: _Slot) -> Received:
        response, tier = slot.response, slot.tier
        elapsed = (self._clock.monotonic() - slot.start) * 1000
        assert slot.accepted is not None
        if not slot.accepted.new:
            self._emit(
                "duplicate",
                response,
                tier=tier,
                latency_ms=elapsed,
                reason=f"first received by tier {slot.accepted.tier}, now {slot.accepted.state}",
            )
            return Received(
                "duplicate", response.id, response.correlation_id, tier, elapsed, slot.accepted.tier
            )
        self._emit("durable", response, tier=tier, latency_ms=elapsed)
        arrival, self._arrival = self._arrival, anyio.Event()
        arrival.set()
        return Received("queued", response.id, response.correlation_id, tier, elapsed)

    def next_arrival(self) -> anyio.Event:
        """Set when the next new response has been made durable; take it before looking, so none is missed."""
        return self._arrival

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self._pump_once()
            except Exception as exc:  # the task's boundary: the session keeps its server whatever happens
                self.last_push_error = (self._clock.wall(), repr(exc))
                self._emit("push_stalled", reason=f"push loop: {exc!r}", level="error")
                await anyio.sleep(0.2)
                self._wake.set()

    async def _pump_once(self) -> None:
        """Commit what arrived and push what is pending, until both are empty."""
        while True:
            slots, self._queue = self._queue[:_BATCH], self._queue[_BATCH:]
            claim = _BATCH if self._pusher is not None else 0
            if not slots and not claim:
                break
            items = [(s.response, s.tier) for s in slots]
            try:
                accepted, batch = await self._io(partial(self.store.accept_batch, items, claim=claim))
            except StoreUnavailable as exc:
                self.last_push_error = (self._clock.wall(), str(exc))
                for s in slots:
                    self._emit("failed", s.response, tier=s.tier, reason=f"store: {exc}", level="error")
                    s.error = exc
                    s.durable.set()
                if not slots:
                    self._emit("push_stalled", reason=f"store: {exc}", level="error")
                    await anyio.sleep(0.2)  # a poll period on the loop: a fake clock must not spin it
                continue
            except Exception as exc:  # one item's fault: find it, set it aside
                if not slots:
                    self._emit("push_stalled", reason=f"claim: {exc!r}", level="error")
                    await anyio.sleep(0.2)
                    continue
                await self._one_by_one(slots)
                continue
            self._report_set_aside()
            for s, acc in zip(slots, accepted, strict=True):
                self._settle(s, acc)
            if batch:
                await self._push_batch(batch)
            if not slots and not batch:
                break

    async def _one_by_one(self, slots: list[_Slot]) -> None:
        """The batch failed for something other than the disk: commit each alone, quarantine what fails."""
        for s in slots:
            try:
                (acc,), _ = await self._io(partial(self.store.accept_batch, [(s.response, s.tier)], claim=0))
            except StoreUnavailable as exc:
                s.error = exc
            except Exception as exc:  # this item's own fault
                s.error = Poisoned("store", f"cannot be stored: {exc!r}"[:500])
                self._quarantined(s.response, s.tier, s.error)
            else:
                self._settle(s, acc)
                continue
            s.durable.set()

    def _quarantined(self, response: Response | None, tier: int, error: Poisoned) -> None:
        self._emit(
            "quarantined", response, tier=tier, reason=str(error), level="error", fields={"kind": error.kind}
        )

    def _report_set_aside(self) -> None:
        for row in self.store.set_aside():
            self._observer.emit(
                Event(
                    "quarantined",
                    tier=row.tier or None,
                    response_id=row.id,
                    session=self.session,
                    reason=row.reason,
                    level="error",
                    fields={"kind": "store", "seq": row.seq},
                )
            )

    async def _push_batch(self, batch: list[Stored]) -> None:
        pusher = self._pusher
        done: list[int] = []
        probes: list[int] = []
        try:
            for item in batch:
                if item.response.synthetic:
                    probes.append(item.seq)
                    continue
                assert pusher is not None
                try:
                    await pusher.push(item.response, item.tier, redelivered=item.redelivered)
                except _CONTENT_ERRORS as exc:  # no frame can be built from it: set aside, go on
                    error = Poisoned("push", f"cannot be written to the client: {exc!r}"[:500])
                    with contextlib.suppress(StoreUnavailable):  # else it stays 'pushing' until a restart
                        await self._io(self.store.quarantine, item.seq, str(error))
                    self._quarantined(item.response, item.tier, error)
                    self._in_flight.pop(item.seq, None)
                    continue
                done.append(item.seq)
        except Exception as exc:  # the client connection broke mid-batch: task boundary
            self.last_push_error = (self._clock.wall(), repr(exc))
            self._emit("push_failed", reason=repr(exc), level="error")
            self.detach()
        finally:
            # Whatever was written is recorded; the rest stays 'pushing' and is redelivered
            # (flagged) after a restart: its outcome is unknown, never silently repeated.
            try:
                if done:
                    await self._io(self.store.mark_delivered, done)
                if probes:
                    await self._io(partial(self.store.mark_delivered, probes, acked=True))
            except StoreUnavailable as exc:
                # Written but not recorded (a full disk): the rows stay 'pushing', so only a restart
                # pushes them again, flagged. The pump must live on: the disk may come back.
                self.last_push_error = (self._clock.wall(), f"store: {exc}")
                self._emit("push_unrecorded", reason=f"store: {exc}", level="error")
        now = self._clock.monotonic()
        for item in batch:
            if item.seq not in done and item.seq not in probes:
                continue
            slot = self._in_flight.pop(item.seq, None)
            latency = (now - slot.start) * 1000 if slot else (self._clock.wall() - item.received_at) * 1000
            self._emit(
                "pushed",
                item.response,
                tier=item.tier,
                latency_ms=latency,
                fields={"redelivered": item.redelivered, "synthetic": item.response.synthetic},
            )
            if slot is not None:
                slot.pushed.set()
