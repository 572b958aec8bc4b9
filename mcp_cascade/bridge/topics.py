"""One forum topic per session, when the bridge's chat is a forum supergroup.

The topic is created on first need (``createForumTopic``), named after the
session's folder with the session id beside it, so two windows of one folder
(``proj`` and ``proj-2``) are told apart. The mapping lives in the ledger, so
it survives restarts. Everything a session sends goes to its topic; a topic
someone deleted is created again (and the message sent there); a topic whose
session ended is closed, and reopened when the session comes back. Private
chats and plain groups have no topics: ``thread`` is None there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from telegram import Message

from mcp_cascade.bridge.ledger import Ledger
from mcp_cascade.bridge.telegram import TelegramClient, TelegramUnavailable
from mcp_cascade.events import Event, Observer
from mcp_cascade.sessions import read_session


def topic_name(session: str, label: str | None) -> str:
    """``folder · session-id`` (just the id when the folder is unknown or already the id)."""
    return session if not label or label == session else f"{label} · {session}"


class Topics:
    """Finds (or makes) each session's topic and sends there."""

    def __init__(self, telegram: TelegramClient, ledger: Ledger, home: Path, observer: Observer) -> None:
        self._tg = telegram
        self._ledger = ledger
        self._home = home
        self._observer = observer
        self._lock = anyio.Lock()

    async def thread(self, chat_id: int, session: str) -> int | None:
        """The session's topic in ``chat_id`` (created or reopened as needed); None outside forums."""
        if not await anyio.to_thread.run_sync(self._ledger.is_forum, chat_id):
            return None
        async with self._lock:  # two messages of a new session must not make two topics
            known = await anyio.to_thread.run_sync(self._ledger.topic, chat_id, session)
            if known is not None:
                thread, closed = known
                if not closed:
                    return thread
                try:
                    await self._tg.topic(chat_id, thread, "reopen")
                except TelegramUnavailable as exc:
                    if "TOPIC_ID_INVALID" not in str(exc):
                        raise
                else:  # reopened; otherwise it was deleted while closed: make a new one below
                    await anyio.to_thread.run_sync(self._ledger.set_topic, chat_id, session, thread)
                    return thread
            info = await anyio.to_thread.run_sync(read_session, self._home, session)
            thread = await self._tg.create_topic(chat_id, topic_name(session, info.label if info else None))
            await anyio.to_thread.run_sync(self._ledger.set_topic, chat_id, session, thread)
            self._observer.emit(Event("topic_created", session=session, fields={"thread": thread}))
            return thread

    async def send(self, chat_id: int, session: str, text: Any, **kw: Any) -> Message:
        """``TelegramClient.send`` into the session's topic; a deleted topic is made again, once."""
        thread = await self.thread(chat_id, session)
        try:
            return await self._tg.send(chat_id, text, thread=thread, **kw)
        except TelegramUnavailable as exc:
            if thread is None or "thread not found" not in str(exc).lower():
                raise
            await anyio.to_thread.run_sync(self._ledger.set_topic, chat_id, session, None)
            thread = await self.thread(chat_id, session)
            return await self._tg.send(chat_id, text, thread=thread, **kw)

    async def sync(self) -> None:
        """Close the topics of sessions that ended; reopen those whose session is back."""
        for chat_id, session, thread, closed in await anyio.to_thread.run_sync(self._ledger.topics):
            info = await anyio.to_thread.run_sync(read_session, self._home, session)
            alive = info is not None and info.alive
            if alive == (not closed):
                continue
            try:
                await self._tg.topic(chat_id, thread, "reopen" if alive else "close")
            except TelegramUnavailable as exc:
                self._observer.emit(Event("topic_failed", level="warning", session=session, reason=str(exc)))
                if "TOPIC_ID_INVALID" not in str(exc):
                    continue
                await anyio.to_thread.run_sync(self._ledger.set_topic, chat_id, session, None)
                continue
            await anyio.to_thread.run_sync(self._ledger.set_topic, chat_id, session, thread, not alive)
