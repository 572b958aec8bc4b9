"""What every watcher backend shares: the names, one change, and the interface.

Kept apart from :mod:`mcp_cascade.watchers` (which chooses and opens a
backend, importing each one only when it is tried) so that a backend depends
on this module alone and never on the chooser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

BackendName = Literal["inotify", "watchfiles", "poll"]
WatcherSetting = Literal["auto", "inotify", "watchfiles", "poll"]
ORDER: tuple[BackendName, ...] = ("inotify", "watchfiles", "poll")
ChangeKind = Literal["changed", "removed", "gone", "overflow"]


@dataclass(frozen=True, slots=True)
class Change:
    """One thing a backend saw.

    ``key`` names the watched folder (None: the backend cannot tell which, so
    every folder should be looked at); ``name`` the entry in it, when known.
    ``kind``: an entry arrived or changed, an entry was removed (reported only
    for folders added with ``removals``), the folder itself is ``gone`` (add it
    again once it is back), or the backend lost events (``overflow``: rescan).
    """

    key: str | None
    name: str | None
    kind: ChangeKind


class Watcher(Protocol):
    """What every backend offers; used by one task at a time."""

    name: BackendName
    reason: str

    def add(self, key: str, path: Path, *, writes: bool = False, removals: bool = False) -> None:
        """Watch the folder ``path`` under ``key``; OSError when it cannot be watched now.

        Every backend reports complete arrivals (a rename into the folder, a
        file closed after writing); ``writes`` adds each write in progress (for
        writers that fill files in place) and ``removals`` entries leaving.
        """
        ...

    def remove(self, key: str) -> None:
        """Stop watching ``key`` (a no-op when it is not watched)."""
        ...

    async def changes(self, timeout: float) -> list[Change]:
        """What changed, waiting up to ``timeout`` seconds for the first change; [] when nothing did."""
        ...
