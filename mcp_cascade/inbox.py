"""The tier-3 maildir of one session (DESIGN 6): producer and consumer file operations.

``inbox/tmp`` → ``inbox/new`` by atomic rename; the consumer claims into
``inbox/cur`` and moves what it cannot accept to ``inbox/failed`` with a
``<name>.reason`` file. Any program that follows these steps by hand is a valid
producer.

Everything here is plain, synchronous file work: no watcher, no event loop.
The watcher (:mod:`mcp_cascade.receive.watch`) calls it from a worker thread. Entries
are examined with ``lstat`` and opened with ``O_NOFOLLOW | O_NONBLOCK``, so a
symlink is never followed and a fifo never blocks.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from mcp_cascade.durable import BINARY, CLOEXEC, NOFOLLOW, NONBLOCK, atomic_write, durable_rename, write_excl
from mcp_cascade.errors import InvalidResponse
from mcp_cascade.response import Response, from_json
from mcp_cascade.validation import MAX_BODY_BYTES

SUBDIRS = ("tmp", "new", "cur", "failed")
STALE_TMP_S = 3600.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# <time_ns>-<id-safe>.json; colons are accepted from hand-written producers that keep the id as is.
NAME_RE = re.compile(r"^([0-9]{1,20})-[A-Za-z0-9._:-]{1,200}\.json$")
# Failures of the machine (descriptors, space, I/O), not of one file: they keep the queue's order and retry.
TRANSIENT_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM}
)
_READ_FLAGS = os.O_RDONLY | NOFOLLOW | NONBLOCK | CLOEXEC | BINARY


@dataclass(frozen=True, slots=True)
class Enqueued:
    """Where a response was made durable, and how long that took."""

    path: Path
    latency_ms: float


def ensure_inbox(root: Path) -> None:
    """Create the maildir folders, and the session directory above them, 0700.

    (``mkdir(parents=True)`` would give the parents it creates the default mode.)
    """
    root.parent.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in (root.parent, root, *(root / sub for sub in SUBDIRS)):
        path.mkdir(exist_ok=True, mode=0o700)


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
    durable_rename(tmp, final)
    return Enqueued(final, (time.perf_counter() - start) * 1000)


def sort_key(name: str) -> tuple[int, str]:
    """Durable order: by the numeric time prefix (padded or not), then by name; foreign names first."""
    match = NAME_RE.match(name)
    return (int(match.group(1)) if match else -1, name)


# --- consumer side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A valid response, now in ``cur/``: deliver it, then :meth:`Maildir.ack` it.

    ``set_aside`` is what stood in its way in ``cur/`` (a planted folder), moved to ``failed/``.
    """

    name: str
    response: Response
    set_aside: Failed | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A file that cannot be accepted: moved to ``failed/`` (``moved``), or left where it was.

    ``kind`` is the quarantine reason: ``invalid`` (its content) or ``unreadable`` (not a file one can read).
    """

    name: str
    reason: str
    moved: bool
    kind: str = "invalid"


@dataclass(frozen=True, slots=True)
class Unsettled:
    """A fresh file that is not JSON yet (written in place, perhaps still being written)."""

    name: str
    settles_at: float


@dataclass(frozen=True, slots=True)
class Gone:
    """The entry disappeared before it could be taken (another consumer, or its producer)."""

    name: str


Taken = Claimed | Failed | Unsettled | Gone


@dataclass(frozen=True, slots=True)
class Recovery:
    """What start-up recovery did."""

    requeued: tuple[str, ...]
    removed_tmp: tuple[str, ...]


class NotReadable(ValueError):
    """A reason not to read an entry found after opening it (not a regular file, too large)."""


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def read_regular(path: Path, limit: int = MAX_BODY_BYTES) -> tuple[bytes, os.stat_result]:
    """Read a regular file of at most ``limit`` bytes without following a symlink or blocking on a fifo.

    Raises NotReadable (not a regular file, too large) or OSError (cannot open or read).
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since lstat
            raise NotReadable("not a regular file: symlink (never followed)") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable(f"not a regular file: {_kind(st.st_mode)} (never read)")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:
                raise NotReadable(f"larger than the {limit} byte limit")
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


class Maildir:
    """The consumer's operations on one session's inbox.

    Synchronous and stateless apart from its paths: call it from a worker
    thread. ``settle_s`` is how long a file that is not JSON yet is given to
    become complete (in-place writers) before it is failed.
    """

    def __init__(self, root: Path, session: str, *, settle_s: float = 0.5) -> None:
        self.root = root
        self.session = session
        self.settle_s = settle_s
        self.new = root / "new"
        self.cur = root / "cur"
        self.tmp = root / "tmp"
        self.failed = root / "failed"

    def ensure(self) -> None:
        """Create the folders."""
        ensure_inbox(self.root)

    def writable(self) -> bool:
        """Whether a producer can deliver here (new/ exists and can be written)."""
        return os.access(self.new, os.W_OK | os.X_OK) and os.access(self.tmp, os.W_OK | os.X_OK)

    def recover(self, now: float | None = None) -> Recovery:
        """Start-up: every claimed file back into new/ (its delivery is unknown); stale tmp/ files removed.

        What is not a regular file in cur/ was never claimed by us: it goes to failed/.
        """
        now = time.time() if now is None else now
        requeued: list[str] = []
        for name in sorted((p.name for p in self.cur.iterdir()), key=sort_key):
            try:
                kind = _kind(os.lstat(self.cur / name).st_mode)
                if kind != "regular file" or os.path.lexists(self.new / name):
                    self.fail(name, f"found in cur/ at start-up: {kind}, never claimed as such", claimed=True)
                    continue
                (self.cur / name).rename(self.new / name)
            except FileNotFoundError:
                continue
            requeued.append(name)
        removed: list[str] = []
        for entry in os.scandir(self.tmp):
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) or now - st.st_mtime <= STALE_TMP_S:
                    continue
                Path(entry.path).unlink()
            except FileNotFoundError:
                continue
            removed.append(entry.name)
        return Recovery(tuple(requeued), tuple(sorted(removed)))

    def scan(self) -> list[str]:
        """Every entry in new/, in durable order."""
        return sorted((p.name for p in self.new.iterdir()), key=sort_key)

    def failed_count(self) -> int:
        """How many files have been failed (one ``.reason`` file each)."""
        return sum(1 for p in self.failed.iterdir() if p.name.endswith(".reason"))

    def take(self, name: str, now: float | None = None) -> Taken:
        """Examine ``new/<name>``: claim it into cur/ if it holds a response for this session, else fail it.

        A fresh file that is empty or not JSON yet is left in new/ (Unsettled) until
        ``settle_s`` after its last modification: an in-place writer may still be at it.
        """
        now = time.time() if now is None else now
        path = self.new / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return Gone(name)
        kind = _kind(st.st_mode)
        if kind != "regular file":
            return self.fail(
                name, f"not a regular file: {kind} (never followed or opened)", kind="unreadable"
            )
        if not NAME_RE.match(name):
            return self.fail(name, "name is not <time_ns>-<id>.json (DESIGN 6)")
        if st.st_size > MAX_BODY_BYTES:
            return self.fail(name, f"{st.st_size} bytes; the limit is {MAX_BODY_BYTES}")
        try:
            data, st = read_regular(path)
        except FileNotFoundError:
            return Gone(name)
        except NotReadable as exc:
            return self.fail(name, str(exc), kind="unreadable")
        except OSError as exc:
            if exc.errno in TRANSIENT_ERRNOS:
                raise  # the machine's fault, not the file's: it keeps its place in the queue
            return self.fail(name, f"cannot be read: {exc.strerror or exc}", kind="unreadable")
        try:
            response = from_json(data)
        except InvalidResponse as exc:
            if exc.kind == "malformed" and now - st.st_mtime < self.settle_s:
                return Unsettled(name, st.st_mtime + self.settle_s)
            reason = "empty file (0 bytes)" if not data else f"{exc.kind}: {exc}"
            return self.fail(name, reason)
        if response.session is not None and response.session != self.session:
            return self.fail(name, f"addressed to session {response.session!r}, this is {self.session!r}")
        aside = None
        try:
            try:
                path.rename(self.cur / name)
            except IsADirectoryError:
                # A folder planted in cur/ under this name, never claimed by us: it steps aside into
                # failed/ and the claim is made again (renaming over a stale regular copy just works).
                reason = "a directory in cur/ in the way of a claim"
                aside = self.fail(name, reason, claimed=True, kind="unreadable")
                path.rename(self.cur / name)
        except FileNotFoundError:
            return Gone(name)
        return Claimed(name, response, aside)

    def ack(self, names: list[str]) -> None:
        """Delivered (or a duplicate): remove the claimed files."""
        for name in names:
            (self.cur / name).unlink(missing_ok=True)

    def requeue(self, names: list[str]) -> None:
        """Claimed but not accepted (the store was unavailable): back into new/ for another try."""
        for name in names:
            try:
                (self.cur / name).rename(self.new / name)
            except FileNotFoundError:
                continue

    def fail(self, name: str, reason: str, *, claimed: bool = False, kind: str = "invalid") -> Failed:
        """Move ``name`` (from new/, or cur/ when ``claimed``) into failed/ and write ``<name>.reason``.

        Where the move is impossible (permissions, a name clash with a folder) the
        entry is left in place and the result says so.
        """
        source = (self.cur if claimed else self.new) / name
        target = name if not os.path.lexists(self.failed / name) else f"{name}.{time.time_ns()}"
        try:
            source.rename(self.failed / target)
        except FileNotFoundError:
            return Failed(name, reason + "; it disappeared before it could be moved", False, kind)
        except OSError as exc:
            return Failed(
                name, f"{reason}; left in place: cannot move it ({exc.strerror or exc})", False, kind
            )
        try:
            atomic_write(self.failed / f"{target}.reason", f"{reason}\n".encode())
        except OSError as exc:
            return Failed(name, f"{reason}; the .reason file could not be written ({exc})", True, kind)
        return Failed(name, reason, True, kind)
