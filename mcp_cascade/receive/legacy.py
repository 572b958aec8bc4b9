"""cctelegram's responses folder (DESIGN 7): files written in place, read once they have been quiet.

That folder belongs to another program: nothing here creates, renames,
modifies or deletes anything in it. A file is read only after nothing has
touched it for the debounce window; its response id is derived from its name
and content, so the store's deduplication delivers it once, across restarts.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcp_cascade.errors import FieldError, InvalidResponse
from mcp_cascade.inbox import read_regular
from mcp_cascade.response import Response, from_legacy

LEGACY_RE = re.compile(r"^telegram_(callback|response)_[^/]*\.json$")


class Debounce:
    """Keys become due once nothing has touched them for ``window_s`` (a trailing quiet window).

    Pure logic: time comes from ``clock`` (monotonic seconds), or is passed in.
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._last)

    def touch(self, key: str, at: float | None = None) -> None:
        """Record activity on ``key`` (now, or at ``at``, never moving its last activity backwards)."""
        at = self._clock() if at is None else at
        previous = self._last.get(key)
        self._last[key] = at if previous is None else max(previous, at)

    def forget(self, key: str) -> None:
        """Stop tracking ``key``."""
        self._last.pop(key, None)

    def due(self) -> list[str]:
        """Remove and return the keys quiet for the whole window, least recently touched first."""
        now = self._clock()
        ready = sorted((at, key) for key, at in self._last.items() if now - at >= self.window_s)
        for _, key in ready:
            del self._last[key]
        return [key for _, key in ready]

    def next_due(self) -> float | None:
        """When the next key becomes due (clock time), or None when nothing is tracked."""
        return min(self._last.values()) + self.window_s if self._last else None


@dataclass(frozen=True, slots=True)
class Signature:
    """What identifies one version of a file without reading it."""

    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        """The signature of a stat result."""
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class LegacyFile:
    """One quiet, complete read of a legacy file."""

    name: str
    data: bytes
    signature: Signature

    @property
    def mtime(self) -> float:
        """Last modification, seconds since the epoch."""
        return self.signature.mtime_ns / 1e9

    def response(self) -> Response:
        """The response it holds; its id depends only on the file's name and bytes."""
        try:
            data = json.loads(self.data)
        except (ValueError, RecursionError) as exc:
            raise InvalidResponse("malformed", [FieldError("$", f"not valid JSON: {exc}")]) from exc
        return from_legacy(data, id_source=self.name.encode() + b"\0" + self.data)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A legacy file that cannot be read (permissions, too large); left untouched."""

    name: str
    reason: str
    signature: Signature | None


@dataclass(frozen=True, slots=True)
class Busy:
    """A legacy file that changed while it was read: read it again once it is quiet."""

    name: str


def listing(folder: Path) -> dict[str, tuple[Signature, float]]:
    """Legacy answer files in ``folder`` (regular files only, links never followed): signature and mtime."""
    found: dict[str, tuple[Signature, float]] = {}
    for entry in os.scandir(folder):
        if not LEGACY_RE.match(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found[entry.name] = (Signature.of(st), st.st_mtime)
    return found


def read_one(folder: Path, name: str) -> LegacyFile | Unreadable | Busy | None:
    """Read one legacy file without modifying it; None when it is gone."""
    path = folder / name
    try:
        data, st = read_regular(path)
        after = os.lstat(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        try:
            signature: Signature | None = Signature.of(os.lstat(path))
        except OSError:
            signature = None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Unreadable(name, f"cannot be read: {reason} (left untouched)", signature)
    signature = Signature.of(st)
    if Signature.of(after) != signature or len(data) != st.st_size:
        return Busy(name)
    return LegacyFile(name, data, signature)


def read_many(folder: Path, names: list[str]) -> list[LegacyFile | Unreadable | Busy]:
    """:func:`read_one` for each name (in a worker thread), leaving out the files that are gone."""
    return [outcome for name in names if (outcome := read_one(folder, name)) is not None]
