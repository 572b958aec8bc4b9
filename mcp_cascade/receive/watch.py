"""The file tier's consumer: wake-ups and rescans feeding the inbox into the engine.

One task owns one watcher (:mod:`mcp_cascade.watchers`: inotify on Linux,
watchfiles elsewhere or when inotify cannot be had, a tight poll as the last
resort) and waits on it between rescans. The watch is armed before the first
scan, so a file that lands in between is seen either way. The watcher says
*when*; the listing of ``new/`` says *what*, in durable (name) order. A lost
wake-up, even a whole overflowed queue, therefore costs one rescan and never a
response.

Every response goes through :meth:`Engine.receive` (tier 3), which deduplicates
across tiers; a claimed file is removed only once ``receive`` has returned,
which means the response is durable in the store.

This module owns the loop (arming, wake-ups, rescans, health); what a drain
does is in :mod:`mcp_cascade.receive.watch_inbox`, the legacy folder's delivery in
:mod:`mcp_cascade.receive.watch_legacy`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from mcp_cascade.clock import SYSTEM, Clock
from mcp_cascade.events import Event, EventName, Observer
from mcp_cascade.inbox import Maildir
from mcp_cascade.ops.health import FileFacts, file_problems, tier_status
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.watch_inbox import InboxDrain
from mcp_cascade.receive.watch_legacy import LegacyFolder
from mcp_cascade.watchers import Change, Watcher, WatcherSetting, candidates, open_watcher
from mcp_cascade.wire import Tier

T = TypeVar("T")
_INBOX, _LEGACY = "inbox", "legacy"


class InboxWatcher:
    """Delivers the session's inbox (and an optional legacy folder) through the engine.

    Use :meth:`running` as an async context manager: it returns once the watch
    is armed and start-up recovery is done, and owns the watching task.
    """

    def __init__(
        self,
        maildir: Maildir,
        engine: Engine,
        observer: Observer,
        *,
        rescan_s: float = 1.0,
        legacy_dir: Path | None = None,
        debounce_s: float = 0.5,
        legacy_max_age_s: float = 7 * 86400,
        clock: Clock = SYSTEM,
        watcher: WatcherSetting = "auto",
    ) -> None:
        self.maildir = maildir
        self.engine = engine
        self.rescan_s = rescan_s
        self.legacy_dir = legacy_dir
        self._observer = observer
        self._clock = clock
        self._limiter = anyio.CapacityLimiter(1)
        self._setting: WatcherSetting = watcher
        self._watcher: Watcher | None = None
        self._armed: set[str] = set()
        self._relist_legacy = False
        self._dirty = True
        self._full: str | None = "startup"
        self._inbox = InboxDrain(maildir, engine, clock=clock, io=self._io, emit=self._emit)
        self._legacy = (
            None
            if legacy_dir is None
            else LegacyFolder(
                legacy_dir,
                engine,
                debounce_s=debounce_s,
                max_age_s=legacy_max_age_s,
                clock=clock,
                io=self._io,
                emit=self._emit,
            )
        )
        self.alive = False
        self.writable = False
        self.overflows = 0
        self.last_rescan_at: float | None = None
        self.rescan_lag_ms = 0.0
        self.last_error: str | None = None
        self._failing: dict[str, str] = {}  # what is broken right now → what went wrong
        self._next_rescan = 0.0

    def retune(self, *, rescan_s: float, debounce_s: float) -> None:
        """Apply a reloaded rescan period and debounce window; they take effect from the next tick."""
        self.rescan_s = rescan_s
        self.maildir.settle_s = debounce_s
        if self._legacy is not None:
            self._legacy.debounce.window_s = debounce_s

    # --- lifecycle ----------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[InboxWatcher]:
        """Choose and start a watcher, arm it, recover the inbox, then deliver until exit."""
        async with open_watcher(self._setting) as watcher, anyio.create_task_group() as tg:
            self._watcher = watcher
            self._emit(
                "watcher_chosen",
                level="info" if watcher.name == candidates(self._setting)[0][0] else "warning",
                reason=watcher.reason,
                fields={"watcher": watcher.name},
            )
            await tg.start(self._run, watcher)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _run(
        self, watcher: Watcher, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self._prepare(startup=True)
        self.alive = True
        task_status.started()
        try:
            await self._loop(watcher)
        finally:
            self.alive = False

    async def _prepare(self, *, startup: bool = False) -> None:
        """Create and arm what is missing; at start-up also recover cur/ and tmp/."""
        try:
            if _INBOX not in self._armed:
                await self._io(self.maildir.ensure)
                self._dirty = True
            if startup:
                recovery = await self._io(self.maildir.recover)
                self._inbox.failed = await self._io(self.maildir.failed_count)
                if recovery.requeued or recovery.removed_tmp:
                    self._emit(
                        "inbox_recovered",
                        reason="claimed files back to new/, stale tmp/ files removed",
                        fields={"requeued": len(recovery.requeued), "removed_tmp": len(recovery.removed_tmp)},
                    )
            self.writable = await self._io(self.maildir.writable)
            self._healed("inbox")
        except OSError as exc:
            self.writable = False
            self._trouble("inbox", f"inbox {self.maildir.root} is unusable: {exc}")
        if self._watcher is None:
            return
        if _INBOX not in self._armed and self.writable:
            try:
                self._watcher.add(_INBOX, self.maildir.new)
                self._armed.add(_INBOX)
                self._dirty = True  # whatever landed before the watch was armed
                self._healed("inbox watch")
            except OSError as exc:
                self._trouble("inbox watch", f"cannot watch {self.maildir.new} ({exc}); rescans only")
        if self.legacy_dir is not None and _LEGACY not in self._armed:
            try:
                self._watcher.add(_LEGACY, self.legacy_dir, writes=True)
                self._armed.add(_LEGACY)
                self._relist_legacy = True
                self._healed("legacy watch")
            except OSError as exc:
                self._trouble("legacy watch", f"cannot watch legacy folder {self.legacy_dir} ({exc})")

    def _trouble(self, what: str, message: str) -> None:
        """Report a problem once, when it starts."""
        if what not in self._failing:
            self._failing[what] = message
            self._error(message)

    def _healed(self, what: str) -> None:
        if what in self._failing:
            del self._failing[what]
            self._emit("watch_restored", reason=f"{what} works again")

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _emit(self, name: EventName, **kw: Any) -> None:
        self._observer.emit(Event(name, tier=Tier.FILE, session=self.maildir.session, **kw))

    def _error(self, message: str) -> None:
        self.last_error = message
        self._emit("watch_error", reason=message, level="error")

    # --- the loop -----------------------------------------------------------------------------

    async def _loop(self, watcher: Watcher) -> None:
        self._next_rescan = self._clock.monotonic() + self.rescan_s
        while True:
            try:
                await self._cycle()
                await self._wait(watcher)
            except Exception as exc:  # the task's boundary: a surprise must not stop the queue
                self._error(f"watcher iteration failed: {exc!r}")
                await anyio.sleep(self.rescan_s)
                self._full = self._full or "after an error"

    async def _wait(self, watcher: Watcher) -> None:
        """Sleep until a wake-up, a debounce or settle deadline, or the rescan tick."""
        deadlines = [self._next_rescan]
        if self._legacy is not None and (legacy_due := self._legacy.debounce.next_due()) is not None:
            deadlines.append(legacy_due)
        if (settles_at := self._inbox.settles_at()) is not None:
            deadlines.append(self._clock.monotonic() + settles_at - self._clock.wall())
        timeout = max(0.0, min(deadlines) - self._clock.monotonic())
        self._on_changes(await watcher.changes(timeout))
        now = self._clock.monotonic()
        if (settles_at := self._inbox.settles_at()) is not None and settles_at <= self._clock.wall():
            self._dirty = True
        if now >= self._next_rescan:
            self.rescan_lag_ms = (now - self._next_rescan) * 1000
            self._next_rescan = now + self.rescan_s
            self._full = self._full or "periodic"
            await self._maintain()

    def _on_changes(self, changes: list[Change]) -> None:
        overflow = False
        for change in changes:
            if change.kind == "overflow":
                overflow = True
            elif change.key is None:  # the backend cannot tell where: look everywhere
                self._dirty = True
                self._relist_legacy = self.legacy_dir is not None
            elif change.key == _INBOX:
                if change.kind == "gone":
                    self._drop_watch(_INBOX, f"{self.maildir.new} was removed or moved")
                self._dirty = True
            elif change.key == _LEGACY:
                if change.kind == "gone":
                    self._drop_watch(_LEGACY, f"legacy folder {self.legacy_dir} was removed or moved")
                elif change.name is None:
                    self._relist_legacy = True
                elif self._legacy is not None:
                    self._legacy.touched(change.name)
        if overflow:
            self.overflows += 1
            self._full = "overflow"
            self._emit(
                "inotify_overflow", level="warning", reason="kernel event queue overflowed; rescanning"
            )

    def _drop_watch(self, key: str, message: str) -> None:
        self._armed.discard(key)
        if self._watcher is not None:
            self._watcher.remove(key)
        self._error(message + "; re-arming at the next rescan")

    async def _maintain(self) -> None:
        """Each rescan tick: re-arm what was lost, retry what the store refused, refresh health facts."""
        await self._prepare()
        if await self._inbox.requeue():
            self._dirty = True

    async def _cycle(self) -> None:
        full, self._full = self._full, None
        start = self._clock.monotonic()
        if (full or self._relist_legacy) and self.legacy_dir is not None:
            self._relist_legacy = False
            await self._legacy_listing()
        if (full or self._dirty) and not self._inbox.stalled:
            # A response the store refused waits in cur/ until the next tick puts it back in new/:
            # draining past it meanwhile would let later files overtake it (the inbox keeps name order).
            self._dirty = False
            if not await self._inbox.drain():
                self.writable = False  # new/ is gone: recreated at the next rescan tick
        if self._legacy is not None:
            await self._legacy.deliver_due()
        if full:
            self.last_rescan_at = self._clock.wall()
            self._emit(
                "rescan",
                level="debug" if full == "periodic" else "info",
                reason=full,
                latency_ms=(self._clock.monotonic() - start) * 1000,
                fields={"pending": self._inbox.pending},
            )

    # --- the legacy folder --------------------------------------------------------------------

    async def _legacy_listing(self) -> None:
        assert self._legacy is not None
        try:
            await self._legacy.relist()
        except OSError as exc:
            self._trouble("legacy folder", f"cannot list legacy folder {self.legacy_dir} ({exc})")
            return
        self._healed("legacy folder")

    # --- health -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The file tier's live state (``/health/file``); its status follows :mod:`mcp_cascade.ops.health`."""
        age = self._clock.wall() - self.last_rescan_at if self.last_rescan_at is not None else None
        problems = file_problems(
            FileFacts(
                inbox_writable=self.writable,
                watcher_alive=self.alive,
                watch_armed=_INBOX in self._armed,
                rescan_age_s=age,
                rescan_interval_s=self.rescan_s,
                stalled=len(self._inbox.stalled),
                failing=dict(self._failing),
            )
        )
        body: dict[str, Any] = {
            "status": tier_status(problems),
            "problems": [p.text for p in problems],
            "watcher": None if self._watcher is None else self._watcher.name,
            "watcher_reason": None if self._watcher is None else self._watcher.reason,
            "watcher_alive": self.alive,
            "watch_armed": _INBOX in self._armed,
            "inbox_writable": self.writable,
            "pending_new": self._inbox.pending,
            "failed": self._inbox.failed,
            "stalled": len(self._inbox.stalled),
            "overflows": self.overflows,
            "last_rescan_at": self.last_rescan_at,
            "last_rescan_age_s": None if age is None else round(age, 3),
            "rescan_lag_ms": round(self.rescan_lag_ms, 3),
            "rescan_every_s": self.rescan_s,
            "last_error": self.last_error,
        }
        if self._legacy is not None:
            body["legacy"] = self._legacy.health(
                armed=_LEGACY in self._armed, readable="legacy folder" not in self._failing
            )
        return body
