"""Durable state of one session: every response received, and what became of it.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk (WAL fsynced)
before it returns, which is what lets the webhook answer 2xx and the inbox
delete a claimed file. One row per response id makes deduplication a primary
key lookup that holds across tiers, processes and restarts.

States: ``pending`` (durable, not yet written to the client) → ``pushing``
(durably marked just before the write to stdout) → ``delivered``. A row found
in ``pushing`` at start-up is the one window no process can close (written or
not, nobody knows), so it is pushed again with ``redelivered``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_cascade.errors import StoreUnavailable
from mcp_cascade.migrations import Database, open_read_only, open_versioned
from mcp_cascade.response import Response, from_dict

# Schema versions (see :mod:`mcp_cascade.migrations`): step N takes a store from version N to N + 1.
STEPS = (
    # 1: the schema of release 0.1.0 (which left user_version at 0).
    """
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL,
    tier INTEGER NOT NULL,
    body TEXT NOT NULL,
    request_id TEXT,
    received_at REAL NOT NULL,
    state TEXT NOT NULL,
    redelivered INTEGER NOT NULL DEFAULT 0,
    pushed_at REAL,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS responses_state ON responses (state, seq);
CREATE INDEX IF NOT EXISTS responses_corr ON responses (correlation_id);
""",
    # 2: retention deletes by state and age without a scan.
    "CREATE INDEX responses_received ON responses (state, received_at);",
    # 3: rows set aside for a fault of their own (state 'quarantined'), with the reason.
    "CREATE TABLE quarantine (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, reason TEXT NOT NULL,"
    " at REAL NOT NULL);",
)
# Rows set aside for a fault of their own: never pushed, never counted as waiting.
_LIVE = "state NOT IN ('delivered', 'quarantined')"


@dataclass(frozen=True, slots=True)
class Stored:
    """A response as the store holds it."""

    seq: int
    response: Response
    tier: int
    received_at: float
    state: str
    redelivered: bool
    pushed_at: float | None
    acked_at: float | None


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A row set aside (state ``quarantined``) with the reason it cannot be pushed."""

    seq: int
    id: str
    reason: str
    at: float
    tier: int = 0


@dataclass(frozen=True, slots=True)
class Accepted:
    """The outcome of :meth:`Store.accept`: new, or seen before (and in which state)."""

    new: bool
    seq: int
    state: str
    tier: int


class Store(Database):
    """Synchronous, thread-safe; call it from a worker thread, never the event loop."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        """Wrap an open database; :meth:`open` and :meth:`open_readonly` open one."""
        super().__init__(db)
        self.path = path
        self._set_aside: list[Quarantined] = []
        self._aside_lock = threading.Lock()  # not self._lock: the event loop must never wait on a commit

    @classmethod
    def open(cls, path: Path) -> Store:
        """The session's store, created and migrated if need be (blocking disk work)."""
        return cls(path, open_versioned(path, STEPS))

    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Another process's store, read beside it (inspect): never created, never written."""
        db = open_read_only(path, STEPS)
        try:
            db.execute("SELECT 1 FROM responses LIMIT 1")
        except sqlite3.Error as exc:
            db.close()
            raise StoreUnavailable(f"cannot read {path}: {exc}") from exc
        return cls(path, db)

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.OperationalError as exc:  # disk full, read-only, locked past the timeout
            raise StoreUnavailable(str(exc)) from exc

    def accept(self, response: Response, tier: int, now: float | None = None) -> Accepted:
        """Record ``response`` durably unless its id is known; say which it was."""
        accepted, _ = self.accept_batch([(response, tier)], claim=0, now=now)
        return accepted[0]

    def accept_batch(
        self, items: Sequence[tuple[Response, int]], *, claim: int, now: float | None = None
    ) -> tuple[list[Accepted], list[Stored]]:
        """Group commit: record every new response, then claim up to ``claim`` pending ones for pushing.

        One transaction, so one fsync, however many responses arrived together;
        the claimed rows are the oldest pending (durable order), marked ``pushing``.
        """
        now = time.time() if now is None else now
        accepted: list[Accepted] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for response, tier in items:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO responses"
                        " (id, correlation_id, tier, body, request_id, received_at, state)"
                        " VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                        (
                            response.id,
                            response.correlation_id,
                            tier,
                            response.to_json().decode(),
                            response.request_id,
                            now,
                        ),
                    )
                    if cur.rowcount == 1:
                        accepted.append(Accepted(True, int(cur.lastrowid or 0), "pending", tier))
                        continue
                    seq, state, first_tier = self._db.execute(
                        "SELECT seq, state, tier FROM responses WHERE id = ?", (response.id,)
                    ).fetchone()
                    accepted.append(Accepted(False, int(seq), str(state), int(first_tier)))
                rows = self._claim_locked(claim) if claim else []
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # disk full, read-only, locked past the timeout
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreUnavailable(str(exc)) from exc
        return accepted, rows

    def _claim_locked(self, limit: int) -> list[Stored]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM responses WHERE state = 'pending' ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        claimed: list[Stored] = []
        for row in rows:
            try:
                claimed.append(_row(row))
            except Exception as exc:  # a row no reader can rebuild must not block the ones behind it
                reason = f"stored body cannot be read: {exc!r}"[:500]
                self._quarantine_locked(int(row[0]), reason, tier=int(row[2]))
        if claimed:
            self._db.executemany(
                "UPDATE responses SET state = 'pushing' WHERE seq = ?", [(s.seq,) for s in claimed]
            )
        return claimed

    def _quarantine_locked(self, seq: int, reason: str, now: float | None = None, *, tier: int = 0) -> None:
        now = time.time() if now is None else now
        self._db.execute("UPDATE responses SET state = 'quarantined' WHERE seq = ?", (seq,))
        (rid,) = self._db.execute("SELECT id FROM responses WHERE seq = ?", (seq,)).fetchone()
        self._db.execute("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?)", (seq, rid, reason, now))
        with self._aside_lock:
            self._set_aside.append(Quarantined(seq, str(rid), reason, now, tier))

    def quarantine(self, seq: int, reason: str) -> None:
        """Set one row aside for a fault of its own (durably): it is never pushed again."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._quarantine_locked(seq, reason)
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # disk full, read-only, locked past the timeout
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreUnavailable(str(exc)) from exc

    def set_aside(self) -> list[Quarantined]:
        """The rows quarantined since the last call (for the caller to report)."""
        with self._aside_lock:
            found, self._set_aside = self._set_aside, []
        return found

    def quarantined(self, limit: int = 200) -> list[Quarantined]:
        """Every quarantined row with its reason, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT q.seq, q.id, q.reason, q.at, COALESCE(r.tier, 0) FROM quarantine q"
                    " LEFT JOIN responses r ON r.seq = q.seq ORDER BY q.seq LIMIT ?",
                    (limit,),
                ).fetchall()
            except sqlite3.OperationalError:  # read beside a serve that has not upgraded the store yet
                return []
        return [Quarantined(int(a), str(b), str(c), float(d), int(t)) for a, b, c, d, t in rows]

    def known(self, response_id: str) -> bool:
        """Whether this id was ever accepted (and is still retained)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM responses WHERE id = ?", (response_id,)).fetchone()
        return row is not None

    def claim(self, limit: int) -> list[Stored]:
        """Mark the oldest pending responses ``pushing`` (one durable commit) and return them in order."""
        return self.accept_batch([], claim=limit)[1]

    def mark_delivered(self, seqs: Sequence[int], now: float | None = None, *, acked: bool = False) -> None:
        """Record that these were written to the client (and, for probes, acknowledged)."""
        now = time.time() if now is None else now
        with self._lock:
            # Not fsynced on its own (the next durable commit carries it): losing this mark to a power
            # cut only makes the response come back flagged ``redelivered``, never lost.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                # COALESCE: a tool may have acknowledged the response while it was being pushed.
                self._db.executemany(
                    "UPDATE responses SET state = 'delivered', pushed_at = ?, "
                    "acked_at = COALESCE(acked_at, ?) WHERE seq = ?",
                    [(now, now if acked else None, s) for s in seqs],
                )
            except sqlite3.OperationalError as exc:  # disk full, read-only, locked past the timeout
                raise StoreUnavailable(str(exc)) from exc
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def recover(self) -> int:
        """At start-up: responses caught mid-push go back to pending, flagged redelivered."""
        with self._lock:
            cur = self._write(
                "UPDATE responses SET state = 'pending', redelivered = 1 WHERE state = 'pushing'"
            )
            return cur.rowcount

    def pending(self, limit: int = 200) -> list[Stored]:
        """Responses not yet delivered, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM responses WHERE {_LIVE} ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return _rows(rows)

    def counts(self) -> dict[str, int]:
        """How many responses are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM responses GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}

    def oldest_pending(self) -> float | None:
        """Receipt time of the oldest response not yet delivered."""
        with self._lock:
            row = self._db.execute(f"SELECT MIN(received_at) FROM responses WHERE {_LIVE}").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def unacked(self, request_id: str | None = None, limit: int = 50) -> list[Stored]:
        """Delivered or pending responses no tool call has acknowledged yet, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM responses WHERE acked_at IS NULL AND state != 'quarantined'"
        args: list[Any] = []
        if request_id is not None:
            sql += " AND request_id = ?"
            args.append(request_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return _rows(rows)

    def recent(self, limit: int = 20) -> list[Stored]:
        """The newest responses, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM responses ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return _rows(rows)

    def find(self, key: str) -> list[Stored]:
        """Responses whose id or correlation id is ``key``."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM responses WHERE id = ? OR correlation_id = ? ORDER BY seq",
                (key, key),
            ).fetchall()
        return _rows(rows)

    def ack(self, ids: Sequence[str], now: float | None = None) -> int:
        """Acknowledge responses by id (tools for clients without channels); returns how many."""
        now = time.time() if now is None else now
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self._lock:
            cur = self._write(
                f"UPDATE responses SET acked_at = ? WHERE acked_at IS NULL AND id IN ({marks})", (now, *ids)
            )
        return cur.rowcount

    def purge(self, retention_s: float, now: float | None = None) -> int:
        """Forget delivered responses older than the retention (at least 7 days by config)."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._write(
                "DELETE FROM responses WHERE state = 'delivered' AND received_at < ?", (now - retention_s,)
            )
            return cur.rowcount


_COLUMNS = "seq, body, tier, received_at, state, redelivered, pushed_at, acked_at"


def _rows(rows: list[tuple[Any, ...]]) -> list[Stored]:
    """The rows that can be rebuilt; one that cannot is quarantined when the pump reaches it."""
    out: list[Stored] = []
    for row in rows:
        try:
            out.append(_row(row))
        except Exception:  # a read-only view skips a row it cannot rebuild
            continue
    return out


def _row(row: tuple[Any, ...]) -> Stored:
    seq, body, tier, received_at, state, redelivered, pushed_at, acked_at = row
    return Stored(
        seq=int(seq),
        response=from_dict(json.loads(body), trusted=True),
        tier=int(tier),
        received_at=float(received_at),
        state=str(state),
        redelivered=bool(redelivered),
        pushed_at=pushed_at,
        acked_at=acked_at,
    )
