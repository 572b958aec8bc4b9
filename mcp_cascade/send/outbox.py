"""The sender's outbox: a response is durable here before the cascade starts.

One fsynced file per response under ``<root>/pending/``. The process delivering
an entry holds an exclusive ``flock`` on it from before it appears (the lock is
taken on the temporary file, which is then renamed into place) until it is
done. The kernel drops the lock when the process dies, however it dies, so "not
locked" means "nobody is delivering this": a restarted sender (or any other
sender on the same home) re-drives exactly those entries. A re-driven response
may reach the session twice; the server's dedup by id makes that harmless.

An entry is removed once its response is delivered or durably queued at the
server; one the server rejects as invalid moves to ``failed/`` with a
``.reason`` file and is never retried.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_cascade.config import SESSION_ID_RE
from mcp_cascade.durable import BINARY, NOFOLLOW, atomic_write, fsync_dir, fsync_file
from mcp_cascade.errors import CascadeError, InvalidResponse
from mcp_cascade.locks import try_lock
from mcp_cascade.response import Response, from_dict
from mcp_cascade.wire import TIER_CHOICES, TierChoice

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_STALE_TMP_S = 3600.0


class CorruptEntry(CascadeError):
    """An outbox file that cannot be read back; it was moved to ``failed/``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One response waiting in the outbox."""

    name: str
    response: Response
    session: str
    tier: TierChoice
    created_at: float


class OutboxClaim:
    """A locked entry of this process; it ends with :meth:`done`, :meth:`reject` or :meth:`release`."""

    def __init__(self, outbox: Outbox, entry: OutboxEntry, fd: int) -> None:
        self.outbox = outbox
        self.entry = entry
        self._fd = fd

    @property
    def path(self) -> Path:
        """Where the entry lives."""
        return self.outbox.pending / self.entry.name

    def done(self) -> None:
        """The response reached the server: forget it (a lost unlink only means a deduplicated resend)."""
        self.path.unlink(missing_ok=True)
        self.release()

    def reject(self, reason: str) -> None:
        """The server refused the response as invalid: keep it in ``failed/`` with the reason."""
        self.outbox.move_to_failed(self.path, reason)
        self.release()

    def release(self) -> None:
        """Unlock it, leaving it for a later re-drive."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Outbox:
    """The outbox directory; every method is blocking disk work (call it from a worker thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pending = root / "pending"
        self.tmp = root / "tmp"
        self.failed = root / "failed"

    def ensure(self) -> None:
        """Create the folders (0700) and remove stale temporary files no live process is writing."""
        for folder in (self.pending, self.tmp, self.failed):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        cutoff = time.time() - _STALE_TMP_S
        for path in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_mtime > cutoff:
                    continue
            fd = _lock(path)
            if fd is not None:  # its writer died before the entry was durable: nothing was acknowledged
                path.unlink(missing_ok=True)
                os.close(fd)

    def put(self, response: Response, session: str, tier: TierChoice) -> OutboxClaim:
        """Make ``response`` durable, locked by this process: tmp (O_EXCL, flock, fsync) → pending/, fsync."""
        stored = self.put_many([(response, session, tier)])[0]
        if isinstance(stored, OSError):
            raise stored
        return stored

    def put_many(self, items: Sequence[tuple[Response, str, TierChoice]]) -> list[OutboxClaim | OSError]:
        """:meth:`put` for each item, with one fsync of ``pending/`` for the lot (a group commit).

        Each result is the item's claim, or the OSError that kept it from being durable.
        """
        written: list[tuple[int, Path, OutboxEntry] | OSError] = []
        for response, session, tier in items:
            try:
                written.append(self._write(response, session, tier))
            except OSError as exc:
                written.append(exc)
        moved: list[tuple[int, Path, OutboxEntry] | OSError] = []
        for item in written:
            if not isinstance(item, OSError):
                fd, tmp, entry = item
                try:
                    os.replace(tmp, self.pending / entry.name)
                except OSError as exc:
                    os.close(fd)
                    tmp.unlink(missing_ok=True)
                    item = exc
            moved.append(item)
        try:
            if any(not isinstance(item, OSError) for item in moved):
                fsync_dir(self.pending)
        except OSError as exc:  # not known to be durable: never acknowledged (a re-drive may still send it)
            for item in moved:
                if not isinstance(item, OSError):
                    os.close(item[0])
            return [exc if not isinstance(item, OSError) else item for item in moved]
        return [item if isinstance(item, OSError) else OutboxClaim(self, item[2], item[0]) for item in moved]

    def _write(self, response: Response, session: str, tier: TierChoice) -> tuple[int, Path, OutboxEntry]:
        """The entry written and fsynced in ``tmp/``, locked: its descriptor, path and entry."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{_UNSAFE.sub('_', response.id)[:100]}.json"
        tmp = self.tmp / name
        created = time.time()
        record = {
            "protocol": 1,
            "session": session,
            "tier": tier,
            "created_at": created,
            "response": response.to_dict(),
        }
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW | BINARY, 0o600)
        try:
            try_lock(fd, block=False)  # a file this process just created: nobody else can hold it
            view = memoryview(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode())
            while view:
                view = view[os.write(fd, view) :]
            fsync_file(fd)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp, OutboxEntry(name, response, session, tier, created)

    def done_many(self, claims: Sequence[OutboxClaim]) -> list[OSError | None]:
        """:meth:`OutboxClaim.done` for each claim; each result is None, or the OSError it raised."""
        results: list[OSError | None] = []
        for claimed in claims:
            try:
                claimed.done()
            except OSError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    def names(self) -> list[str]:
        """Every pending entry's name, oldest first."""
        try:
            return sorted(p.name for p in self.pending.iterdir() if p.name.endswith(".json"))
        except FileNotFoundError:
            return []

    def claim(self, name: str) -> OutboxClaim | None:
        """Lock the entry ``name`` if no live process holds it; None when held or gone.

        Raises CorruptEntry (after moving the file to ``failed/``) when it cannot be read back.
        """
        path = self.pending / name
        fd = _lock(path)
        if fd is None:
            return None
        try:
            if not _same_file(fd, path):  # delivered and removed between listing and locking
                os.close(fd)
                return None
            entry = _parse(name, _read_all(fd))
        except CorruptEntry as exc:
            self.move_to_failed(path, exc.reason)
            os.close(fd)
            raise
        return OutboxClaim(self, entry, fd)

    def entries(self) -> Iterator[OutboxEntry]:
        """Every readable pending entry, locked or not (for inspection)."""
        for name in self.names():
            with contextlib.suppress(OSError, CorruptEntry):
                yield _parse(name, (self.pending / name).read_bytes())

    def move_to_failed(self, path: Path, reason: str) -> None:
        """Move ``path`` out of the way with a ``.reason`` file beside it."""
        self.failed.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.failed / (path.name + ".reason"), reason.encode() + b"\n")
        with contextlib.suppress(FileNotFoundError):
            path.rename(self.failed / path.name)
        fsync_dir(self.failed)


def _lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | BINARY)
    except (FileNotFoundError, OSError):
        return None
    if not try_lock(fd, block=False):
        os.close(fd)
        return None
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _parse(name: str, raw: bytes) -> OutboxEntry:
    try:
        data: Any = json.loads(raw)
        if not isinstance(data, dict) or data.get("protocol") != 1:
            raise CorruptEntry(Path(name), "not an outbox entry of protocol 1")
        tier = data.get("tier")
        if tier not in TIER_CHOICES:
            raise CorruptEntry(Path(name), f"unknown tier {tier!r}")
        session = data.get("session")
        if not isinstance(session, str) or not SESSION_ID_RE.match(session):
            raise CorruptEntry(Path(name), f"bad session id {session!r}")
        return OutboxEntry(name, from_dict(data["response"]), session, tier, float(data["created_at"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(Path(name), f"unreadable: {exc}") from exc
    except InvalidResponse as exc:
        raise CorruptEntry(Path(name), f"invalid response: {exc}") from exc
