"""Schema versions of the SQLite stores, and the migrations that bring an older store up to date.

Every store records its version in ``PRAGMA user_version``. ``steps[i]`` takes
a store from version ``i`` to ``i + 1``; step 0 is the schema release 0.1.0
created with ``CREATE ... IF NOT EXISTS`` (so it also adopts a 0.1.0 store,
which carries version 0 with its tables already there). Migrations run when a
store is opened, all pending steps in one transaction with the new version, so
a crash or an error leaves the store exactly as it was. A store whose version
is newer than this release knows is refused before anything is written to it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from mcp_cascade.errors import StoreUnavailable


class StoreTooNew(StoreUnavailable):
    """The store was written by a newer release: never altered, the process refuses to start."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"{path} has schema version {found}, newer than this release knows ({known}): it was written"
            " by a newer mcp-cascade. Upgrade mcp-cascade (pip install -U mcp-cascade), or move the file"
            " away to start afresh"
        )
        self.found = found
        self.known = known


def version(db: sqlite3.Connection) -> int:
    """The store's schema version."""
    (found,) = db.execute("PRAGMA user_version").fetchone()
    return int(found)


def check_readable(db: sqlite3.Connection, path: Path, steps: Sequence[str]) -> None:
    """Refuse to read a store from a newer release (its tables may mean something else)."""
    found = version(db)
    if found > len(steps):
        raise StoreTooNew(path, found, len(steps))


def migrate(db: sqlite3.Connection, path: Path, steps: Sequence[str]) -> int:
    """Bring the store at ``path`` up to ``len(steps)``, in one transaction; returns the version found.

    ``db`` is in autocommit mode (``isolation_level=None``). Raises
    :class:`StoreTooNew` without writing when the store is newer than ``steps``.
    """
    check_readable(db, path, steps)
    if version(db) == len(steps):
        return len(steps)
    with transaction(db, f"cannot upgrade {path}"):
        found = version(db)  # again under the write lock: another process may have migrated it
        if found > len(steps):
            raise StoreTooNew(path, found, len(steps))
        for step in steps[found:]:
            for statement in _statements(step):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(steps)}")
    return found


@contextmanager
def transaction(db: sqlite3.Connection, what: str) -> Iterator[sqlite3.Connection]:
    """One durable commit, rolled back on any error; a database failure becomes StoreUnavailable."""
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreUnavailable(f"{what}: {exc}") from exc
        raise


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit the open transaction first)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out


def open_versioned(path: Path, steps: Sequence[str]) -> sqlite3.Connection:
    """Open (creating) a durable store, migrated to ``len(steps)``: WAL, ``synchronous=FULL``, 0600.

    Autocommit mode, usable from worker threads (callers serialise with their own lock).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        check_readable(db, path, steps)  # before any pragma writes to a newer release's file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # On macOS a commit's fsync leaves it in the drive's cache: ask for F_FULLFSYNC, at commits and
        # checkpoints. Only macOS's SQLite acts on these; elsewhere they are accepted and change nothing.
        db.execute("PRAGMA fullfsync=ON")
        db.execute("PRAGMA checkpoint_fullfsync=ON")
        migrate(db, path, steps)
    except BaseException:
        db.close()
        raise
    path.chmod(0o600)
    return db


def open_read_only(path: Path, steps: Sequence[str]) -> sqlite3.Connection:
    """Another process's store, opened to read beside it (inspect): never created, written or migrated."""
    try:
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=5.0
        )
        check_readable(db, path, steps)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot read {path}: {exc}") from exc
    return db


class Database:
    """A store on one SQLite connection, serialised by one lock; closed by :meth:`close` or a ``with``.

    Constructors take the open connection and do no I/O; each store's ``open`` opens one.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
