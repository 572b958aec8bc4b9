"""The inbox's side of the file tier: taking ``new/`` in durable order and delivering it.

:class:`InboxDrain` lists the maildir, takes the next batch (examine, validate,
claim: :mod:`mcp_cascade.inbox`), makes the claimed responses durable in one
group commit through :meth:`Engine.receive_many`, and only then removes their
files. What the store refused waits in ``cur/`` until :meth:`requeue` puts it
back in ``new/``; a file not yet settled is retried when it settles. The
:class:`~mcp_cascade.receive.watch.InboxWatcher` decides when to drain.
"""

from __future__ import annotations

from functools import partial

import anyio

from mcp_cascade.clock import Clock
from mcp_cascade.errors import Poisoned, StoreUnavailable
from mcp_cascade.inbox import TRANSIENT_ERRNOS, Claimed, Failed, Maildir, Taken, Unsettled
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.watch_legacy import Emit, RunIO
from mcp_cascade.wire import Tier

_BATCH = 64


class InboxDrain:
    """Delivers ``new/`` through the engine, batch by batch, and counts what it could not."""

    def __init__(self, maildir: Maildir, engine: Engine, *, clock: Clock, io: RunIO, emit: Emit) -> None:
        self.maildir = maildir
        self._engine = engine
        self._clock = clock
        self._io = io
        self._emit = emit
        self.pending = 0
        self.failed = 0
        self.stalled: list[str] = []
        self._stuck: set[str] = set()
        self._unsettled: dict[str, float] = {}

    def settles_at(self) -> float | None:
        """When the first file not yet settled becomes readable (wall clock), or None."""
        return min(self._unsettled.values()) if self._unsettled else None

    async def requeue(self) -> bool:
        """Put what the store refused back in ``new/``; True when there was any."""
        if not self.stalled:
            return False
        stalled, self.stalled = self.stalled, []
        await self._io(self.maildir.requeue, stalled)
        return True

    async def drain(self) -> bool:
        """Deliver ``new/`` until it is empty or the store refuses; False when ``new/`` is gone."""
        self._unsettled.clear()
        attempted: set[str] = set()
        while True:
            try:
                names, taken = await self._io(self._next_batch, attempted)
            except FileNotFoundError:
                return False
            self.pending = len(names)
            self._stuck.intersection_update(names)
            if not taken or not await self._deliver(taken):
                return True
            attempted.update(item.name for item in taken)

    def _next_batch(self, attempted: set[str]) -> tuple[list[str], list[Taken]]:
        """List new/ and take the next batch in durable order, in one trip to a worker thread."""
        names = self.maildir.scan()
        todo = [n for n in names if n not in self._stuck and n not in attempted][:_BATCH]
        now = self._clock.wall()
        taken: list[Taken] = []
        for name in todo:
            try:
                taken.append(self.maildir.take(name, now))
            except OSError as exc:
                if exc.errno not in TRANSIENT_ERRNOS:
                    taken.append(self.maildir.fail(name, f"cannot be taken: {exc!r}", kind="unreadable"))
                elif taken:
                    break  # the machine's fault: deliver what came before, retry this one in its turn
                else:
                    raise
        return names, taken

    async def _deliver(self, taken: list[Taken]) -> bool:
        """Make the claimed responses durable in one group commit, in order; False when the store refused."""
        done: list[str] = []
        poisoned: set[str] = set()
        claimed = [item for item in taken if isinstance(item, Claimed)]
        try:
            for item in taken:
                if isinstance(item, Claimed):
                    if item.set_aside is not None:  # a folder planted in cur/: not one of new/'s files
                        self._report(item.set_aside, queued=False)
                    self._emit(
                        "claimed",
                        response_id=item.response.id,
                        correlation_id=item.response.correlation_id,
                        fields={"file": item.name},
                    )
                elif isinstance(item, Failed):
                    self._report(item)
                elif isinstance(item, Unsettled):
                    self._unsettled[item.name] = item.settles_at
            results = await self._engine.receive_many([c.response for c in claimed], Tier.FILE)
            for item, result in zip(claimed, results, strict=True):
                if isinstance(result, StoreUnavailable):
                    continue  # durable in cur/ but not in the store: kept, retried next tick
                if isinstance(result, Poisoned):
                    poisoned.add(item.name)
                    failed = await self._io(partial(self.maildir.fail, item.name, str(result), claimed=True))
                    self._report(failed, counted=True)  # the engine counted its quarantine
                    continue
                done.append(item.name)
                self.pending = max(0, self.pending - 1)
            return len(done) + len(poisoned) == len(claimed)
        finally:
            # Whatever was claimed and not accepted goes back to new/ at the next tick, whatever stopped us.
            self.stalled.extend(c.name for c in claimed if c.name not in done and c.name not in poisoned)
            if done:
                with anyio.CancelScope(shield=True):
                    await self._io(self.maildir.ack, done)

    def _report(self, item: Failed, *, counted: bool = False, queued: bool = True) -> None:
        if queued:
            self.pending = max(0, self.pending - 1)
        if item.moved:
            self.failed += 1
        else:
            self._stuck.add(item.name)
        self._emit(
            "rejected",
            level="warning",
            reason=item.reason,
            fields={"file": item.name, "moved_to_failed": item.moved},
        )
        if item.moved and not counted:
            fields = {"file": item.name, "kind": item.kind}
            self._emit("quarantined", level="warning", reason=item.reason, fields=fields)
