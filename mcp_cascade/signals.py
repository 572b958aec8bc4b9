"""Process signals where the platform has them.

POSIX delivers SIGTERM, SIGINT and SIGHUP to the event loop. Windows has no
SIGHUP, and its event loop cannot receive signals at all: there Ctrl-C arrives
as KeyboardInterrupt (which the command line turns into exit 130), and a
config reload waits for the file watcher.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import anyio


@contextlib.contextmanager
def receiver(*names: str) -> Iterator[AsyncIterator[int] | None]:
    """The named signals (``"SIGHUP"``...) as an async iterator; None where none can be received."""
    wanted = [getattr(signal, name) for name in names if hasattr(signal, name)]
    if sys.platform == "win32" or not wanted:
        yield None
        return
    with anyio.open_signal_receiver(*wanted) as signals:
        yield signals


async def until_terminated(on_signal: Callable[[str], None]) -> None:
    """Return at the first SIGTERM or SIGINT (after ``on_signal(name)``); on Windows, never."""
    with receiver("SIGTERM", "SIGINT") as signals:
        if signals is None:
            await anyio.sleep_forever()
            return
        async for signum in signals:
            on_signal(signal.Signals(signum).name)
            return
