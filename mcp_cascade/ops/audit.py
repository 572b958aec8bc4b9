"""The audit trail: every state change of every response, appended to ``$HOME/audit.jsonl``.

serve, the bridge and ``send`` all append to the same file. Each record is one
``write`` on an ``O_APPEND`` descriptor, so records from several processes never
interleave. Rotation (``audit.jsonl`` → ``audit.jsonl.1`` once it reaches
``audit_max_bytes``, the older ones shifted up to ``audit.jsonl.<audit_generations>``,
the oldest dropped) is decided under an exclusive ``flock`` on a lock file
beside it and re-checked there, so two processes crossing the limit together
rotate once: neither renames the other's fresh file over the previous
generation. A writer whose file was rotated away notices the new inode before
its next record and reopens; a record written in that instant lands at the end
of ``audit.jsonl.1``, never lost.

:meth:`AuditTrail.write` appends the record before it returns, on the thread
that emits. A writer thread would take the stat and the write off the event
loop, but a process killed with SIGKILL would then lose the records still
waiting for it: the steps just before a crash, which are the ones an operator
reads the trail for (the soak's audit check found such gaps). The JSON log,
which is not a record of state changes, is the one written by a thread.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcp_cascade import locks
from mcp_cascade.events import Event
from mcp_cascade.redact import scrub

AUDIT_FILE = "audit.jsonl"
_RECORD_KEYS = ("session", "tier", "response_id", "correlation_id", "latency_ms", "reason")


class AuditTrail:
    """Appends audit records for one process (``component`` names it: serve, bridge, send)."""

    def __init__(self, path: Path, max_bytes: int, component: str, generations: int = 1) -> None:
        self.path = path
        # Previous generations, newest first: audit.jsonl.1, audit.jsonl.2, ...
        self._rotated = [path.with_name(f"{path.name}.{n}") for n in range(1, generations + 1)]
        self._max_bytes = max_bytes
        self._component = component
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._fd = -1
        self._ino = -1

    def write(self, event: Event) -> None:
        """Append ``event`` as one record; it is in the file when this returns."""
        self._append([self._record(time.time(), event)])

    def flush(self) -> None:
        """Nothing waits: every record is written by :meth:`write` itself."""

    def _record(self, ts: float, event: Event) -> bytes:
        record: dict[str, Any] = {
            "ts": round(ts, 6),
            "component": self._component,
            "pid": self._pid,
            "event": event.event,
        }
        for key in _RECORD_KEYS:
            value = getattr(event, key)
            if value is not None:
                record[key] = value
        for key, value in event.fields.items():
            record.setdefault(key, value)
        return (scrub(json.dumps(record, default=str, separators=(",", ":"))) + "\n").encode()

    def _append(self, records: list[bytes]) -> None:
        """Write ``records`` in runs that each fit under the size limit (rotating between runs)."""
        start = 0
        with self._lock:
            while start < len(records):
                end, size = start + 1, len(records[start])
                while end < len(records) and size + len(records[end]) <= self._max_bytes // 2:
                    size += len(records[end])
                    end += 1
                try:
                    self._prepare(size)
                    os.write(self._fd, b"".join(records[start:end]))
                except OSError:
                    pass  # the audit trail is a record, never a reason to fail a delivery
                start = end

    def _prepare(self, incoming: int) -> None:
        """Make ``_fd`` the current file, rotating first when this record would pass the limit."""
        size = self._current_size()
        if size + incoming > self._max_bytes and size > 0:
            with locks.take(self.path.parent, self.path.name + ".lock", wait_s=float("inf")):
                # Re-check under the lock: another process may have rotated in the meantime.
                if self._current_size() + incoming > self._max_bytes:
                    for older, newer in reversed(list(zip(self._rotated[1:], self._rotated, strict=False))):
                        if newer.exists():
                            os.replace(newer, older)
                    os.replace(self.path, self._rotated[0])
                    self._reopen()

    def _current_size(self) -> int:
        """Size of ``audit.jsonl``, reopening it first if it is not the file our descriptor holds."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._reopen()
            return 0
        if st.st_ino != self._ino:
            self._reopen()
            return os.fstat(self._fd).st_size
        return st.st_size

    def _reopen(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._ino = os.fstat(self._fd).st_ino

    def close(self) -> None:
        """Close the file (a later write opens it again)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._ino = -1


def read_audit(home: Path) -> Iterator[dict[str, Any]]:
    """Every audit record under ``home``, oldest generation first.

    Every file is opened before any is read, the current one first, then the
    generations from newest to oldest, so a rotation in between can repeat a
    generation (skipped by inode) but never hide one.
    """
    handles = []
    seen: set[int] = set()
    numbers = sorted(
        int(p.name.rsplit(".", 1)[1])
        for p in home.glob(AUDIT_FILE + ".*")
        if p.name.rsplit(".", 1)[1].isdigit()
    )
    for name in (AUDIT_FILE, *(f"{AUDIT_FILE}.{n}" for n in numbers)):
        try:
            fh = (home / name).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            continue
        ino = os.fstat(fh.fileno()).st_ino
        if ino in seen:
            fh.close()
            continue
        seen.add(ino)
        handles.append(fh)
    for fh in reversed(handles):
        with fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                if isinstance(record, dict):
                    yield record
