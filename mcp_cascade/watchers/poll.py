"""The last resort: list each watched folder every ``interval_s`` and report what differs.

Needs nothing but a directory listing, so it runs wherever Python does. An
entry is its (inode, mtime, size): a rename into the folder and a rewrite in
place both show. The first listing after :meth:`PollWatcher.add` reports
every entry present, so nothing that landed while the watch was being set up
is missed. Listings run in a worker thread; an idle folder costs one listing
per period.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from mcp_cascade.watchers.base import BackendName, Change

Stamp = tuple[int, int, int]


@dataclass(slots=True)
class _Folder:
    path: Path
    removals: bool
    seen: dict[str, Stamp] = field(default_factory=dict)
    gone: bool = False


def listing(path: Path) -> dict[str, Stamp] | None:
    """Each entry of ``path`` as (inode, mtime_ns, size), links not followed; None when ``path`` is gone."""
    found: dict[str, Stamp] = {}
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # claimed or removed between the listing and the stat
                found[entry.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return found


def _listings(paths: list[Path]) -> list[dict[str, Stamp] | None]:
    return [listing(path) for path in paths]


class PollWatcher:
    """Polled folders keyed by name; see :class:`mcp_cascade.watchers.Watcher`."""

    name: BackendName = "poll"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.reason = ""
        self._folders: dict[str, _Folder] = {}
        self._next = time.monotonic()

    def add(self, key: str, path: Path, *, writes: bool = False, removals: bool = False) -> None:
        """See :meth:`.Watcher.add` (every write shows here, whatever ``writes``)."""
        if not path.is_dir():
            raise FileNotFoundError(2, "not a directory", str(path))
        self._folders[key] = _Folder(path, removals)

    def remove(self, key: str) -> None:
        """See :meth:`mcp_cascade.watchers.Watcher.remove`."""
        self._folders.pop(key, None)

    async def changes(self, timeout: float) -> list[Change]:
        """See :meth:`.Watcher.changes`: listings on a fixed period until one differs."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self._next > deadline:
                await anyio.sleep(max(0.0, deadline - now))
                return []
            await anyio.sleep(max(0.0, self._next - now))
            self._next = max(self._next + self.interval_s, time.monotonic())
            folders = list(self._folders.items())
            listings = await anyio.to_thread.run_sync(_listings, [f.path for _, f in folders])
            found = [
                c
                for (key, folder), now_seen in zip(folders, listings, strict=True)
                for c in self._diff(key, folder, now_seen)
            ]
            if found:
                return found

    def _diff(self, key: str, folder: _Folder, now: dict[str, Stamp] | None) -> list[Change]:
        if now is None:
            if folder.gone:
                return []
            folder.gone, folder.seen = True, {}
            return [Change(key, None, "gone")]
        folder.gone = False
        changes = [
            Change(key, name, "changed") for name, entry in now.items() if folder.seen.get(name) != entry
        ]
        if folder.removals:
            changes.extend(Change(key, name, "removed") for name in folder.seen.keys() - now.keys())
        folder.seen = now
        return changes


@asynccontextmanager
async def open_poll(interval_s: float) -> AsyncIterator[PollWatcher]:
    """A poll watcher listing every ``interval_s`` seconds."""
    yield PollWatcher(interval_s)
