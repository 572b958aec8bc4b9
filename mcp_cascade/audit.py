"""The audit trail: every state change of every response, appended to ``$HOME/audit.jsonl``.

serve, the bridge and ``send`` all append to the same file. Each record is one
``write`` on an ``O_APPEND`` descriptor, so records from several processes never
interleave. Rotation (``audit.jsonl`` → ``audit.jsonl.1`` once it reaches
``audit_max_bytes``) is decided under an exclusive ``flock`` on a lock file
beside it and re-checked there, so two processes crossing the limit together
rotate once: neither renames the other's fresh file over the previous
generation. A writer whose file was rotated away notices the new inode before
its next record and reopens; a record written in that instant lands at the end
of ``audit.jsonl.1``, never lost.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcp_cascade import _lock
from mcp_cascade.events import Event

AUDIT_FILE = "audit.jsonl"
_RECORD_KEYS = ("session", "tier", "response_id", "correlation_id", "latency_ms", "reason")


class AuditTrail:
    """Appends audit records for one process (``component`` names it: serve, bridge, send)."""

    def __init__(self, path: Path, max_bytes: int, component: str) -> None:
        self.path = path
        self._rotated = path.with_name(path.name + ".1")
        self._max_bytes = max_bytes
        self._component = component
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._fd = -1
        self._ino = -1

    def write(self, event: Event) -> None:
        """Append ``event`` as one record."""
        record: dict[str, Any] = {
            "ts": round(time.time(), 6),
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
        data = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self._prepare(len(data))
                os.write(self._fd, data)
            except OSError:
                pass  # the audit trail is a record, never a reason to fail a delivery

    def _prepare(self, incoming: int) -> None:
        """Make ``_fd`` the current file, rotating first when this record would pass the limit."""
        size = self._current_size()
        if size + incoming > self._max_bytes and size > 0:
            with _lock.take(self.path.parent, self.path.name + ".lock", wait_s=float("inf")):
                # Re-check under the lock: another process may have rotated in the meantime.
                if self._current_size() + incoming > self._max_bytes:
                    os.replace(self.path, self._rotated)
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
        """Close the file."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._ino = -1


def read_audit(home: Path) -> Iterator[dict[str, Any]]:
    """Every audit record under ``home``, oldest generation first.

    Both files are opened before either is read, and the current one first, so
    a rotation in between can repeat a generation (skipped by inode) but never
    hide one.
    """
    handles = []
    seen: set[int] = set()
    for name in (AUDIT_FILE, AUDIT_FILE + ".1"):
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
