"""The tier-3 maildir of one session (DESIGN 6): producer side.

``inbox/tmp`` → ``inbox/new`` by atomic rename; the consumer claims into
``inbox/cur`` and moves what it cannot accept to ``inbox/failed`` with a
``.reason`` file. Any program that follows these steps by hand is a valid
producer.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from mcp_cascade._fs import fsync_dir, write_excl
from mcp_cascade.response import Response

SUBDIRS = ("tmp", "new", "cur", "failed")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class Enqueued:
    """Where a response was made durable, and how long that took."""

    path: Path
    latency_ms: float


def ensure_inbox(root: Path) -> None:
    """Create the maildir folders (0700)."""
    for sub in SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


def file_name(response: Response, now_ns: int | None = None) -> str:
    """``<time_ns>-<id-safe>.json``: unique, and sortable in the order it became durable."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"{stamp:020d}-{_UNSAFE.sub('_', response.id)[:100]}.json"


def enqueue(root: Path, response: Response) -> Enqueued:
    """Write ``response`` into the inbox at ``root``: tmp (O_EXCL, 0600), fsync, rename into new/, fsync new/.

    When this returns, the response survives a crash or power loss.
    """
    start = time.perf_counter()
    ensure_inbox(root)
    name = file_name(response)
    tmp = root / "tmp" / name
    write_excl(tmp, response.to_json())
    final = root / "new" / name
    tmp.rename(final)
    fsync_dir(root / "new")
    return Enqueued(final, (time.perf_counter() - start) * 1000)
