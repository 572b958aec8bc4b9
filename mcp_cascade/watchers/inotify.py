"""The Linux backend: one inotify descriptor (inotify_simple) awaited on the event loop.

No thread sleeps on it and nothing polls: the event loop's reader wakes the
task. A full kernel queue is reported (``IN_Q_OVERFLOW``) and becomes an
``overflow`` change, so the caller rescans and nothing is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from mcp_cascade.watchers.base import BackendName, Change


class InotifyWatcher:
    """inotify watches keyed by name; see :class:`mcp_cascade.watchers.Watcher`."""

    name: BackendName = "inotify"

    def __init__(self) -> None:
        # Imported here: inotify_simple needs termios and a libc with inotify_init1 (Linux only).
        import inotify_simple

        self._flags = inotify_simple.flags
        self._ino = inotify_simple.INotify(nonblocking=True)
        self._keys: dict[str, int] = {}
        self._wds: dict[int, str] = {}
        self.reason = ""

    def add(self, key: str, path: Path, *, writes: bool = False, removals: bool = False) -> None:
        """See :meth:`mcp_cascade.watchers.Watcher.add`."""
        f = self._flags
        mask = f.MOVED_TO | f.CLOSE_WRITE | f.DELETE_SELF | f.MOVE_SELF | f.ONLYDIR | f.DONT_FOLLOW
        if writes:
            mask |= f.CREATE | f.MODIFY
        if removals:
            mask |= f.MOVED_FROM | f.DELETE
        self.remove(key)
        wd = self._ino.add_watch(path, mask)
        self._keys[key] = wd
        self._wds[wd] = key

    def remove(self, key: str) -> None:
        """See :meth:`mcp_cascade.watchers.Watcher.remove`."""
        wd = self._keys.pop(key, None)
        if wd is None:
            return
        self._wds.pop(wd, None)
        with contextlib.suppress(OSError):  # the kernel already dropped it (IN_IGNORED)
            self._ino.rm_watch(wd)

    async def changes(self, timeout: float) -> list[Change]:
        """See :meth:`mcp_cascade.watchers.Watcher.changes`."""
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(self._ino)
        return [change for event in self._ino.read(timeout=0) if (change := self._change(event))]

    def _change(self, event: Any) -> Change | None:
        f = self._flags
        if event.mask & f.Q_OVERFLOW:
            return Change(None, None, "overflow")
        key = self._wds.get(event.wd)
        if key is None:
            return None  # a watch removed a moment ago
        if event.mask & (f.IGNORED | f.DELETE_SELF | f.MOVE_SELF):
            self._wds.pop(event.wd, None)  # the key stays until remove(), which drops a moved folder's watch
            return Change(key, None, "gone")
        if event.mask & (f.MOVED_FROM | f.DELETE):
            return Change(key, event.name or None, "removed")
        return Change(key, event.name or None, "changed")

    def close(self) -> None:
        """Release the descriptor (and every watch with it)."""
        self._ino.close()


@asynccontextmanager
async def open_inotify() -> AsyncIterator[InotifyWatcher]:
    """An inotify watcher; raises whatever inotify_simple raises when inotify cannot be had."""
    watcher = InotifyWatcher()
    try:
        yield watcher
    finally:
        watcher.close()
