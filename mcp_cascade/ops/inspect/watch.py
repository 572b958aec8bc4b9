"""``inspect watch``: the status tables and the newest audit events, redrawn in place every interval."""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from rich.console import Console, Group
from rich.live import Live

from mcp_cascade.ops.audit import AUDIT_FILE
from mcp_cascade.ops.inspect import views
from mcp_cascade.ops.inspect.snapshot import take_snapshot

_BACKLOG_BYTES = 64 * 1024


class AuditTail:
    """The newest records of the audit trail, read incrementally (follows rotation like ``tail -F``)."""

    def __init__(self, path: Path, keep: int = 15) -> None:
        self._path = path
        self._records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._ino = -1
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """Read what was appended since the last call; returns the records that were new."""
        try:
            fh = self._path.open("rb")
        except FileNotFoundError:
            return []
        fresh: list[dict[str, Any]] = []
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_ino != self._ino or st.st_size < self._offset:
                first = self._ino == -1
                self._ino, self._partial = st.st_ino, b""
                self._offset = max(0, st.st_size - _BACKLOG_BYTES) if first else 0
                if self._offset:
                    fh.seek(self._offset)
                    self._offset += len(fh.readline())  # skip into the first whole line
            fh.seek(self._offset)
            chunk = fh.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                fresh.append(record)
                self._records.append(record)
        return fresh

    @property
    def latest(self) -> list[dict[str, Any]]:
        """The newest records kept, oldest first."""
        return list(self._records)


async def watch(home: Path, console: Console, *, interval: float, count: int, as_json: bool) -> None:
    """Redraw every ``interval`` seconds, ``count`` times (0: until interrupted).

    With ``as_json``: one JSON object per refresh and line, the status and the audit records new since.
    """
    tail = AuditTail(home / AUDIT_FILE)
    shown = 0
    with contextlib.ExitStack() as stack:
        live = None if as_json else stack.enter_context(Live(console=console, auto_refresh=False))
        while True:
            snap = await take_snapshot(home)
            fresh = await anyio.to_thread.run_sync(tail.poll)
            if live is None:
                print(json.dumps({"status": snap.to_dict(), "events": fresh}, default=str), flush=True)
            else:
                live.update(Group(views.snapshot(snap), views.events(tail.latest)), refresh=True)
            shown += 1
            if count and shown >= count:
                return
            await anyio.sleep(interval)
