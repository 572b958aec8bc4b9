"""The bridge's outbox: every Telegram update, durable before its offset is committed.

Telegram forgets an update once a ``getUpdates`` call passes an offset above its
id, so the order is: write the batch and the next offset in one FULL commit,
then poll with that offset. An update then moves ``new`` → ``routed`` (its
response and target session decided and recorded, so a restart re-sends the
very same response) → ``delivered`` (the cascade made it durable somewhere) →
``done`` (the person got feedback). A crash anywhere repeats at most the step
in progress; the session's store drops the repeated response by its id.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_cascade.errors import StoreUnavailable
from mcp_cascade.migrations import Database, open_read_only, open_versioned, transaction
from mcp_cascade.response import Response, from_dict

# Schema versions (see :mod:`mcp_cascade.migrations`): step N takes the file from version N to N + 1.
STEPS = (
    # 1: the schema of release 0.1.0 (which left user_version at 0).
    """
CREATE TABLE IF NOT EXISTS updates (
    update_id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'new',
    session TEXT,
    response TEXT,
    received_at REAL NOT NULL,
    done_at REAL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS updates_state ON updates (state, update_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""",
    # 2: retention forgets finished updates without a scan.
    "CREATE INDEX updates_done ON updates (state, done_at);",
)
OUTBOX_DB = Path("bridge") / "outbox.db"  # under the home
# The note of an update set aside for content of its own (done, never retried): this prefix, then why.
DEAD_LETTER = "dead letter: "


@dataclass(frozen=True, slots=True)
class UpdateEntry:
    """One update and how far it got."""

    update_id: int
    body: dict[str, Any]
    state: str
    session: str | None
    response: Response | None
    received_at: float
    note: str | None


class UpdateOutbox(Database):
    """Synchronous and thread-safe; call it from a worker thread."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        """Wrap an open database; :meth:`open` and :meth:`open_readonly` open one."""
        super().__init__(db)
        self.path = path

    @classmethod
    def open(cls, path: Path) -> UpdateOutbox:
        """The bridge's outbox, created and migrated if need be (blocking disk work)."""
        return cls(path, open_versioned(path, STEPS))

    @classmethod
    def open_readonly(cls, path: Path) -> UpdateOutbox:
        """The running bridge's outbox, read beside it (inspect): never created, never written."""
        return cls(path, open_read_only(path, STEPS))

    def offset(self) -> int | None:
        """The offset for the next getUpdates (None before the first update)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'offset'").fetchone()
        return None if row is None else int(row[0])

    def ingest(self, updates: Sequence[tuple[int, str]], now: float | None = None) -> int:
        """Record ``(update_id, json)`` pairs and the next offset in one FULL commit; return the new count."""
        if not updates:
            return 0
        now = time.time() if now is None else now
        next_offset = max(uid for uid, _ in updates) + 1
        new = 0
        with self._lock, transaction(self._db, "outbox") as db:
            for uid, body in updates:
                cur = db.execute(
                    "INSERT OR IGNORE INTO updates (update_id, body, received_at) VALUES (?, ?, ?)",
                    (uid, body, now),
                )
                new += cur.rowcount
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('offset', ?) ON CONFLICT (key) DO UPDATE"
                " SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (str(next_offset),),
            )
        return new

    def pending(self, limit: int = 64) -> list[UpdateEntry]:
        """Updates not yet done, in update order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT update_id, body, state, session, response, received_at, note FROM updates"
                " WHERE state != 'done' ORDER BY update_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            UpdateEntry(
                int(uid),
                json.loads(body),
                str(state),
                session,
                from_dict(json.loads(response), trusted=True) if response else None,  # validated when routed
                float(received),
                note,
            )
            for uid, body, state, session, response, received, note in rows
        ]

    def _set(self, sql: str, args: Sequence[Any]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"outbox: {exc}") from exc

    def route(self, update_id: int, session: str, response: Response) -> None:
        """Record the response decided for an update and where it goes."""
        self._set(
            "UPDATE updates SET state = 'routed', session = ?, response = ? WHERE update_id = ?",
            (session, response.to_json().decode(), update_id),
        )

    def delivered(self, update_id: int, note: str) -> None:
        """The cascade made the response durable (or delivered it)."""
        self._set("UPDATE updates SET state = 'delivered', note = ? WHERE update_id = ?", (note, update_id))

    def done(self, update_id: int, note: str | None = None, now: float | None = None) -> None:
        """Nothing left to do for this update."""
        self._set(
            "UPDATE updates SET state = 'done', done_at = ?, note = COALESCE(?, note) WHERE update_id = ?",
            (time.time() if now is None else now, note, update_id),
        )

    def dead_letters(self, limit: int = 200) -> list[UpdateEntry]:
        """Updates set aside for good (done, the note saying why), newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT update_id, body, state, session, response, received_at, note FROM updates"
                " WHERE state = 'done' AND substr(note, 1, ?) = ? ORDER BY update_id DESC LIMIT ?",
                (len(DEAD_LETTER), DEAD_LETTER, limit),
            ).fetchall()
        return [
            UpdateEntry(int(uid), json.loads(body), str(state), session, None, float(received), note)
            for uid, body, state, session, _, received, note in rows
        ]

    def depth(self) -> int:
        """Updates not yet done."""
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM updates WHERE state != 'done'").fetchone()
        return int(n)

    def oldest_pending(self) -> float | None:
        """Receipt time of the oldest update not yet done."""
        with self._lock:
            (t,) = self._db.execute("SELECT MIN(received_at) FROM updates WHERE state != 'done'").fetchone()
        return None if t is None else float(t)

    def purge(self, retention_s: float, now: float | None = None) -> int:
        """Forget updates done longer ago than the retention."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM updates WHERE state = 'done' AND done_at < ?", (now - retention_s,)
            )
        return cur.rowcount
