"""Hand items over from the event loop; one thread writes them, a batch at a time.

The audit trail and the JSON log are written once per event. Done on the event
loop, each is a format, a ``write`` and (for the log) a ``flush``, several per
request; done by a thread woken for every item, each hand-over costs a thread
switch. A :class:`Spool` does neither: ``put`` appends to a list and sets an
event that is usually already set; the thread wakes, lets a burst gather for
``linger_s``, and passes everything pending to its sink in one call. ``flush``
returns once everything put before it has reached the sink; pending items are
also flushed at interpreter exit.

aiofiles would not help here: emitting is synchronous (an Observer may not
await), and aiofiles runs each call in a thread of its own, which is the
per-item hand-over this module exists to avoid.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_LIVE: weakref.WeakSet[Spool[object]] = weakref.WeakSet()


class Spool(Generic[T]):
    """Items in, batches out to ``sink`` on one daemon thread (started on the first item)."""

    def __init__(self, sink: Callable[[list[T]], None], name: str, *, linger_s: float = 0.002) -> None:
        self._sink = sink
        self._name = name
        self._linger_s = linger_s
        self._pending: list[T] = []
        self._waiters: list[threading.Event] = []
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, item: T) -> None:
        """Queue ``item`` for the sink (never blocks, never raises)."""
        self._pending.append(item)
        if self._thread is None:
            self._start()
        if not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Return once every item put so far has been through the sink."""
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Event()
        self._waiters.append(done)
        self._wake.set()
        done.wait()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                _LIVE.add(self)  # type: ignore[arg-type]

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._linger_s:
                time.sleep(self._linger_s)
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            items, self._pending = self._pending, []
            if items:
                with contextlib.suppress(Exception):  # a record that cannot be written must not stop it
                    self._sink(items)
            for waiter in waiters:
                waiter.set()


@atexit.register
def _flush_all() -> None:
    for spool in list(_LIVE):
        spool.flush()
