"""What the bridge remembers about its own messages, durably: the routing table.

- prompts: each question or permission prompt, under a short random token that
  the buttons' ``callback_data`` carries (Telegram allows 64 bytes, so the
  session and request are looked up here, not packed into the button);
- messages: which session each bot message was sent for, so a reply to it
  reaches that session;
- chats: the session a chat talks to (chosen with ``/use`` or the last one that
  wrote there), and when an allowed person last wrote from it.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mcp_cascade.migrations import Database, open_versioned, transaction

PromptKind = Literal["ask", "permission"]

# Schema versions (see :mod:`mcp_cascade.migrations`): step N takes the file from version N to N + 1.
STEPS = (
    # 1: the schema of release 0.1.0 (which left user_version at 0).
    """
CREATE TABLE IF NOT EXISTS prompts (
    token TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    session TEXT NOT NULL,
    request_id TEXT NOT NULL,
    chat_id INTEGER NOT NULL,
    message_id INTEGER,
    text TEXT NOT NULL,
    options TEXT NOT NULL,
    created_at REAL NOT NULL,
    answer TEXT,
    answered_by TEXT
);
CREATE INDEX IF NOT EXISTS prompts_message ON prompts (chat_id, message_id);
CREATE INDEX IF NOT EXISTS prompts_request ON prompts (chat_id, request_id);
CREATE INDEX IF NOT EXISTS prompts_answered ON prompts (answered_by);
CREATE TABLE IF NOT EXISTS messages (
    chat_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    session TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (chat_id, message_id)
);
CREATE TABLE IF NOT EXISTS chats (
    chat_id INTEGER PRIMARY KEY,
    session TEXT,
    chosen INTEGER NOT NULL DEFAULT 0,
    active_at REAL,
    seen_at REAL
);
""",
    # 2: retention forgets old prompts and messages without a scan.
    """
CREATE INDEX prompts_created ON prompts (created_at);
CREATE INDEX messages_sent ON messages (sent_at);
""",
    # 3: forum topics, one per session and chat, kept across restarts.
    """
CREATE TABLE forums (chat_id INTEGER PRIMARY KEY);
CREATE TABLE topics (
    chat_id INTEGER NOT NULL,
    session TEXT NOT NULL,
    thread INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, session)
);
CREATE INDEX topics_thread ON topics (chat_id, thread);
""",
)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A question (``ask``) or a permission prompt the bridge sent for a session."""

    token: str
    kind: PromptKind
    session: str
    request_id: str
    chat_id: int
    message_id: int | None
    text: str
    options: tuple[str, ...]
    answer: str | None
    answered_by: str | None


@dataclass(frozen=True, slots=True)
class ChatRoute:
    """The session a chat's plain messages go to, and whether the person chose it."""

    session: str
    chosen: bool
    active_at: float


_PROMPT_COLUMNS = "token, kind, session, request_id, chat_id, message_id, text, options, answer, answered_by"


def _prompt(row: tuple[Any, ...]) -> Prompt:
    token, kind, session, request_id, chat_id, message_id, text, options, answer, answered_by = row
    return Prompt(
        token,
        kind,
        session,
        request_id,
        int(chat_id),
        message_id,
        text,
        tuple(json.loads(options)),
        answer,
        answered_by,
    )


class Ledger(Database):
    """Synchronous and thread-safe; call it from a worker thread."""

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """The bridge's ledger, created and migrated if need be (blocking disk work)."""
        return cls(open_versioned(path, STEPS))

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def new_prompt(
        self,
        kind: PromptKind,
        session: str,
        chat_id: int,
        text: str,
        options: tuple[str, ...] = (),
        request_id: str | None = None,
    ) -> Prompt:
        """Record a prompt before it is sent (so a tap can never find it missing); the token is random."""
        token = secrets.token_hex(5)
        rid = request_id or token
        with self._lock:
            self._db.execute(
                "INSERT INTO prompts (token, kind, session, request_id, chat_id, text, options, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token, kind, session, rid, chat_id, text, json.dumps(options), time.time()),
            )
        return Prompt(token, kind, session, rid, chat_id, None, text, options, None, None)

    def sent(self, chat_id: int, message_id: int, session: str, token: str | None = None) -> None:
        """A message went out for ``session``: remember it for replies; the chat now talks to that session."""
        now = time.time()
        with self._lock, transaction(self._db, "ledger") as db:
            if token is not None:
                db.execute("UPDATE prompts SET message_id = ? WHERE token = ?", (message_id, token))
            db.execute(
                "INSERT OR REPLACE INTO messages (chat_id, message_id, session, sent_at) VALUES (?, ?, ?, ?)",
                (chat_id, message_id, session, now),
            )
            db.execute(
                "INSERT INTO chats (chat_id, session, active_at) VALUES (?, ?, ?) ON CONFLICT (chat_id)"
                " DO UPDATE SET session = CASE WHEN chosen = 1 THEN session ELSE excluded.session END,"
                " active_at = CASE WHEN chosen = 1 THEN active_at ELSE excluded.active_at END",
                (chat_id, session, now),
            )

    def prompt(self, token: str) -> Prompt | None:
        """The prompt behind a button token."""
        row = self._one(f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE token = ?", (token,))
        return None if row is None else _prompt(row)

    def unsent(self, since: float, before: float) -> list[Prompt]:
        """Prompts recorded in [since, before) that never became a message and are not answered."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE message_id IS NULL AND answer IS NULL"
                " AND created_at >= ? AND created_at < ? ORDER BY created_at",
                (since, before),
            ).fetchall()
        return [_prompt(row) for row in rows]

    def prompt_at(self, chat_id: int, message_id: int) -> Prompt | None:
        """The prompt shown as this message, if it is one."""
        row = self._one(
            f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE chat_id = ? AND message_id = ?",
            (chat_id, message_id),
        )
        return None if row is None else _prompt(row)

    def answered_by(self, response_id: str) -> Prompt | None:
        """The prompt this response answered first, if any."""
        row = self._one(f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE answered_by = ?", (response_id,))
        return None if row is None else _prompt(row)

    def open_permission(self, chat_id: int, request_id: str) -> Prompt | None:
        """The newest unanswered permission prompt with this code in this chat."""
        row = self._one(
            f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE chat_id = ? AND request_id = ?"
            " AND kind = 'permission' AND answer IS NULL ORDER BY created_at DESC LIMIT 1",
            (chat_id, request_id),
        )
        return None if row is None else _prompt(row)

    def answer(self, token: str, answer: str, response_id: str) -> Prompt | None:
        """First answer wins: record it unless another response came first; return the prompt as it is now."""
        with self._lock:
            self._db.execute(
                "UPDATE prompts SET answer = ?, answered_by = ? WHERE token = ? AND answer IS NULL",
                (answer, response_id, token),
            )
            row = self._db.execute(
                f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE token = ?", (token,)
            ).fetchone()
        return None if row is None else _prompt(row)

    def session_of(self, chat_id: int, message_id: int) -> str | None:
        """The session a bot message was sent for."""
        row = self._one(
            "SELECT session FROM messages WHERE chat_id = ? AND message_id = ?", (chat_id, message_id)
        )
        return None if row is None else str(row[0])

    def choose(self, chat_id: int, session: str) -> None:
        """The person picked a session with /use: it stays the chat's session until the next /use."""
        with self._lock:
            self._db.execute(
                "INSERT INTO chats (chat_id, session, chosen, active_at) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (chat_id) DO UPDATE"
                " SET session = excluded.session, chosen = 1, active_at = excluded.active_at",
                (chat_id, session, time.time()),
            )

    def route(self, chat_id: int) -> ChatRoute | None:
        """The chat's current session, if any."""
        row = self._one("SELECT session, chosen, active_at FROM chats WHERE chat_id = ?", (chat_id,))
        if row is None or row[0] is None:
            return None
        return ChatRoute(str(row[0]), bool(row[1]), float(row[2] or 0))

    def seen(self, chat_id: int) -> None:
        """An allowed person wrote from this chat."""
        with self._lock:
            self._db.execute(
                "INSERT INTO chats (chat_id, seen_at) VALUES (?, ?)"
                " ON CONFLICT (chat_id) DO UPDATE SET seen_at = excluded.seen_at",
                (chat_id, time.time()),
            )

    def forum(self, chat_id: int) -> None:
        """The chat is a forum supergroup (each session gets a topic there)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO forums (chat_id) VALUES (?)", (chat_id,))

    def is_forum(self, chat_id: int) -> bool:
        """Whether the chat was seen to be a forum."""
        return self._one("SELECT 1 FROM forums WHERE chat_id = ?", (chat_id,)) is not None

    def topic(self, chat_id: int, session: str) -> tuple[int, bool] | None:
        """The session's topic in the chat: (message_thread_id, closed)."""
        row = self._one(
            "SELECT thread, closed FROM topics WHERE chat_id = ? AND session = ?", (chat_id, session)
        )
        return None if row is None else (int(row[0]), bool(row[1]))

    def set_topic(self, chat_id: int, session: str, thread: int | None, closed: bool = False) -> None:
        """Record (or, with ``thread`` None, forget) the session's topic."""
        with self._lock:
            if thread is None:
                self._db.execute("DELETE FROM topics WHERE chat_id = ? AND session = ?", (chat_id, session))
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO topics (chat_id, session, thread, closed) VALUES (?, ?, ?, ?)",
                    (chat_id, session, thread, int(closed)),
                )

    def topic_session(self, chat_id: int, thread: int) -> str | None:
        """The session whose topic this is."""
        row = self._one("SELECT session FROM topics WHERE chat_id = ? AND thread = ?", (chat_id, thread))
        return None if row is None else str(row[0])

    def topics(self) -> list[tuple[int, str, int, bool]]:
        """Every topic: (chat_id, session, thread, closed)."""
        with self._lock:
            rows = self._db.execute("SELECT chat_id, session, thread, closed FROM topics").fetchall()
        return [(int(c), str(s), int(t), bool(x)) for c, s, t, x in rows]

    def chats(self) -> list[int]:
        """Chats an allowed person wrote from, most recent first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT chat_id FROM chats WHERE seen_at IS NOT NULL ORDER BY seen_at DESC"
            ).fetchall()
        return [int(r[0]) for r in rows]

    def purge(self, retention_s: float, now: float | None = None) -> tuple[int, int]:
        """Forget prompts and sent messages older than the retention; returns how many of each.

        A button on a prompt forgotten this way answers "no longer known" when tapped.
        """
        cutoff = (time.time() if now is None else now) - retention_s
        with self._lock, transaction(self._db, "ledger") as db:
            prompts = db.execute("DELETE FROM prompts WHERE created_at < ?", (cutoff,)).rowcount
            messages = db.execute("DELETE FROM messages WHERE sent_at < ?", (cutoff,)).rowcount
        return prompts, messages
