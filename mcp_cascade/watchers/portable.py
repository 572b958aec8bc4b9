"""The portable backend: watchfiles (the notify crate) with its grouping tuned for latency.

FSEvents on macOS, ReadDirectoryChangesW on Windows, kqueue on the BSDs,
inotify on Linux. At its defaults (``awatch``: 1.6 s debounce, 50 ms step)
watchfiles answered in ~76 ms p50 and ~266 ms under bursts; here a change is
returned one ``STEP_MS`` after the last one (so a lone rename waits 10 to 20 ms),
and a steady stream at most ``DEBOUNCE_MS``.

``RustNotify`` (documented in watchfiles' "Rust backend" page) is used
directly rather than ``awatch``: it is built synchronously, so a failure to
start (the kernel's inotify instance or watch limit on Linux, a missing folder)
is an exception here and not a dead background task. It watches a fixed list
of folders, so adding or removing one builds a new notifier. Its ``watch``
blocks a worker thread; a stop event set on cancellation frees that thread
within one step.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mcp_cascade.watchers.base import BackendName, Change

STEP_MS = 10
DEBOUNCE_MS = 50
_ADDED, _MODIFIED, _DELETED = 1, 2, 3


@dataclass(frozen=True, slots=True)
class _Folder:
    path: Path
    removals: bool


class WatchfilesWatcher:
    """watchfiles' notifier over the watched folders; see :class:`mcp_cascade.watchers.Watcher`."""

    name: BackendName = "watchfiles"

    def __init__(self) -> None:
        from watchfiles._rust_notify import RustNotify

        self._make = RustNotify
        self._folders: dict[str, _Folder] = {}
        self._busy = threading.Lock()  # held by the thread inside watch(); close() waits for it
        self._notify: Any = self._build([])  # starting one proves the platform's notifier works
        self.reason = ""

    def _build(self, paths: Iterable[Path]) -> Any:
        try:
            return self._make([str(p) for p in paths], False, False, 50, False, False)
        except OSError:
            raise
        except Exception as exc:  # WatchfilesRustInternalError and kin: the watch cannot be had
            raise OSError(str(exc)) from exc

    def add(self, key: str, path: Path, *, writes: bool = False, removals: bool = False) -> None:
        """See :meth:`.Watcher.add` (every write shows here, whatever ``writes``)."""
        folders = {**self._folders, key: _Folder(path.resolve(), removals)}
        self._replace(folders)

    def remove(self, key: str) -> None:
        """See :meth:`mcp_cascade.watchers.Watcher.remove`."""
        if key in self._folders:
            self._replace({k: f for k, f in self._folders.items() if k != key})

    def _replace(self, folders: dict[str, _Folder]) -> None:
        notify = self._build(f.path for f in folders.values())
        self._close_notify()
        self._notify, self._folders = notify, folders

    async def changes(self, timeout: float) -> list[Change]:
        """See :meth:`.Watcher.changes`."""
        if not self._folders:
            await anyio.sleep(timeout)
            return []
        stop = threading.Event()
        try:
            raw = await anyio.to_thread.run_sync(
                self._watch, self._notify, max(1, int(timeout * 1000)), stop, abandon_on_cancel=True
            )
        finally:
            stop.set()  # a cancelled wait leaves its thread behind; this ends it within one step
        if isinstance(raw, str):  # "timeout", "stop" or "signal"
            return []
        return [change for code, path in raw if (change := self._change(code, Path(path)))]

    def _watch(self, notify: Any, timeout_ms: int, stop: threading.Event) -> Any:
        with self._busy:
            return notify.watch(DEBOUNCE_MS, STEP_MS, timeout_ms, stop)

    def _change(self, code: int, path: Path) -> Change | None:
        for key, folder in self._folders.items():
            if path == folder.path:
                return Change(key, None, "gone") if code == _DELETED else None
            if path.parent == folder.path:
                if code == _DELETED:
                    return Change(key, path.name, "removed") if folder.removals else None
                return Change(key, path.name, "changed")
        # Not under a folder as we spelled it (a platform that reports another spelling of the
        # path): say that something changed, and let every caller look.
        return Change(None, None, "changed")

    def _close_notify(self) -> None:
        with self._busy:
            self._notify.close()

    def close(self) -> None:
        """Stop the notifier's thread (waiting for a watch in flight to see its stop event)."""
        self._close_notify()


@asynccontextmanager
async def open_watchfiles() -> AsyncIterator[WatchfilesWatcher]:
    """A watchfiles watcher; raises ImportError or OSError when the platform's notifier cannot start."""
    watcher = WatchfilesWatcher()
    try:
        yield watcher
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(watcher.close)
