"""Wake-ups when a folder changes, from whatever the platform offers, chosen once with a reason.

Three backends share one small interface (:class:`Watcher`): ``inotify``
(inotify_simple, Linux), ``watchfiles`` (the notify crate: FSEvents on macOS,
ReadDirectoryChangesW on Windows, kqueue on the BSDs, inotify on Linux) and
``poll`` (a listing of each folder every few tens of milliseconds, which works
anywhere a directory can be listed). :func:`open_watcher` tries them in order
and keeps the first that starts; ``auto`` starts with inotify on Linux and with
watchfiles elsewhere, a named backend starts the chain there. Each backend's
library is imported only when it is tried, so nothing here needs a platform.

A watcher only says *that* something changed (and where, when it can tell);
callers still list the folder and still rescan it periodically, so a missed or
coalesced wake-up costs at most one rescan period, never a response.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from mcp_cascade.watchers.base import ORDER, BackendName, Change, ChangeKind, Watcher, WatcherSetting

__all__ = [
    "ORDER",
    "BackendName",
    "Change",
    "ChangeKind",
    "Watcher",
    "WatcherSetting",
    "candidates",
    "open_watcher",
]


Opener = Callable[[], AbstractAsyncContextManager[Watcher]]


def _openers(poll_s: float) -> dict[BackendName, Opener]:
    # Imported here, not at module level: each backend pulls in its own library only when tried.
    from mcp_cascade.watchers.inotify import open_inotify
    from mcp_cascade.watchers.poll import open_poll
    from mcp_cascade.watchers.portable import open_watchfiles

    return {"inotify": open_inotify, "watchfiles": open_watchfiles, "poll": lambda: open_poll(poll_s)}


def candidates(setting: WatcherSetting, platform: str = sys.platform) -> tuple[list[BackendName], str]:
    """The backends to try, in order, and why the chain starts where it does."""
    if setting != "auto":
        return list(ORDER[ORDER.index(setting) :]), f"watcher = {setting!r} in the configuration"
    if platform.startswith("linux"):
        return list(ORDER), "auto: inotify is the Linux default"
    return list(ORDER[1:]), f"auto: inotify is Linux-only ({platform}); watchfiles is the default here"


@asynccontextmanager
async def open_watcher(setting: WatcherSetting = "auto", *, poll_s: float = 0.05) -> AsyncIterator[Watcher]:
    """The first backend of the chain that starts; its ``reason`` says why it is the one.

    A backend that fails to start for any reason (its library missing, a libc
    without the call it needs, the kernel's instance limit, anything it raises)
    hands over to the next; ``poll`` needs nothing but a directory listing.
    ``poll_s`` is the poll backend's period.
    """
    chain, why = candidates(setting)
    openers = _openers(poll_s)
    failures: list[str] = []
    async with AsyncExitStack() as stack:
        for name in chain:
            try:
                watcher = await stack.enter_async_context(openers[name]())
            except Exception as exc:  # any failure to start means: try the next backend
                failures.append(f"{name} unavailable ({type(exc).__name__}: {exc})")
                continue
            watcher.reason = "; ".join([why, *failures])
            yield watcher
            return
    raise OSError("no watcher could start: " + "; ".join(failures))
