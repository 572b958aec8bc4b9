"""The bridge's SQLite files: WAL, ``synchronous=FULL`` (a commit is on disk when it returns), 0600."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcp_cascade.errors import StoreUnavailable


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a durable database and apply ``schema``; autocommit, usable from worker threads."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    path.chmod(0o600)
    return db


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
