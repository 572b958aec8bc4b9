"""The legacy folder's side of the file tier: which quiet files are due, and their delivery.

The folder belongs to another program (:mod:`mcp_cascade.receive.legacy` holds the
read-only file operations and the debounce). :class:`LegacyFolder` keeps what
the watcher has seen of it (each file's signature, so an unchanged file is
never read twice) and hands due files to the engine, oldest first. The
:class:`~mcp_cascade.receive.watch.InboxWatcher` owns the wake-ups and calls it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mcp_cascade.clock import Clock
from mcp_cascade.errors import InvalidResponse, StoreUnavailable
from mcp_cascade.events import EventName
from mcp_cascade.receive import legacy
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.wire import Tier

T = TypeVar("T")


class RunIO(Protocol):
    """Runs a blocking call on the watcher's one worker thread."""

    def __call__(self, fn: Callable[..., T], *args: object) -> Awaitable[T]: ...


class Emit(Protocol):
    """Emits one of the file tier's events (the watcher binds tier and session)."""

    def __call__(self, name: EventName, **kw: Any) -> None: ...


class LegacyFolder:
    """What the watcher knows of one legacy folder, and the delivery of its quiet files."""

    def __init__(
        self,
        folder: Path,
        engine: Engine,
        *,
        debounce_s: float,
        max_age_s: float,
        clock: Clock,
        io: RunIO,
        emit: Emit,
    ) -> None:
        self.folder = folder
        self.max_age_s = max_age_s
        self.debounce = legacy.Debounce(debounce_s, clock.monotonic)
        self._engine = engine
        self._clock = clock
        self._io = io
        self._emit = emit
        self._seen: dict[str, legacy.Signature] = {}

    def touched(self, name: str) -> None:
        """A wake-up named a file: it is due once it has been quiet for the window."""
        if legacy.LEGACY_RE.match(name):
            self.debounce.touch(name)

    async def relist(self) -> None:
        """List the folder and start the quiet window of every new or changed file (raises OSError)."""
        found = await self._io(legacy.listing, self.folder)
        for name in set(self._seen) - set(found):
            del self._seen[name]
        now_wall, now = self._clock.wall(), self._clock.monotonic()
        for name, (signature, mtime) in found.items():
            if self._seen.get(name) != signature:
                # Quiet since its mtime: a file untouched for the window is due right away.
                self.debounce.touch(name, now - max(0.0, now_wall - mtime))

    async def deliver_due(self) -> None:
        """Read the files whose window has passed and deliver them, oldest first."""
        names = self.debounce.due()
        if not names:
            return
        files: list[legacy.LegacyFile] = []
        for outcome in await self._io(legacy.read_many, self.folder, names):
            if isinstance(outcome, legacy.LegacyFile):
                files.append(outcome)
            elif isinstance(outcome, legacy.Busy):
                self.debounce.touch(outcome.name)
            elif outcome.signature is not None and self._seen.get(outcome.name) != outcome.signature:
                self._seen[outcome.name] = outcome.signature
                self._emit(
                    "rejected",
                    level="warning",
                    reason=outcome.reason,
                    fields={"file": outcome.name, "legacy": True},
                )
        for file in sorted(files, key=lambda f: (f.signature.mtime_ns, f.name)):
            if not await self._deliver(file):
                return

    async def _deliver(self, file: legacy.LegacyFile) -> bool:
        if self._seen.get(file.name) == file.signature:
            return True
        if self._clock.wall() - file.mtime > self.max_age_s:
            self._seen[file.name] = file.signature  # older than the dedup retention: never replayed
            return True
        try:
            response = file.response()
        except InvalidResponse as exc:
            self._seen[file.name] = file.signature
            self._emit(
                "rejected",
                level="warning",
                reason=f"{exc.kind}: {exc} (left untouched in the legacy folder)",
                fields={"file": file.name, "legacy": True},
            )
            return True
        if not await self._io(self._engine.store.known, response.id):
            self._emit(
                "claimed",
                response_id=response.id,
                correlation_id=response.correlation_id,
                fields={"file": file.name, "legacy": True},
            )
            try:
                await self._engine.receive(response, Tier.FILE)
            except StoreUnavailable:
                self.debounce.touch(file.name)  # retried after another quiet window
                return False
        self._seen[file.name] = file.signature
        return True

    def health(self, *, armed: bool, readable: bool) -> dict[str, Any]:
        """The folder's part of ``/health/file``."""
        return {
            "dir": str(self.folder),
            "armed": armed,
            "readable": readable,
            "waiting": len(self.debounce),
            "known_files": len(self._seen),
        }
