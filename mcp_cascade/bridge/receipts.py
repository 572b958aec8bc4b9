"""Receipts the person can see: the bridge reacts to their message as it moves.

accepted (durable in the bridge) → delivered (pushed into the session), or
waiting (not delivered when the overall timeout passed; the ``⏳ Queued`` note
says why). Where a chat does not allow reactions, a short reply says
"delivered" instead, once, and nothing is said for the intermediate steps.

Receipts never hold up the answers themselves: :meth:`Receipts.mark` only
notes the newest stage of each message, and :meth:`Receipts.run` shows them in
the background at the pace the flood limits allow (a stage overtaken before its
turn is skipped: the person sees where their answer is now).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import anyio

from mcp_cascade.bridge.flood import Priority
from mcp_cascade.bridge.telegram import TelegramClient, TelegramUnavailable
from mcp_cascade.events import Event, Observer

Stage = Literal["accepted", "delivered", "waiting"]


class Receipts:
    """Sets the reaction of each stage; remembers chats where reactions are refused."""

    def __init__(self, telegram: TelegramClient, emoji: Callable[[Stage], str], observer: Observer) -> None:
        self._tg = telegram
        self._emoji = emoji
        self._observer = observer
        self._refused: set[int] = set()
        self._pending: dict[tuple[int, int], tuple[Stage, str, int | None]] = {}
        self._wake = anyio.Event()
        self.shown: int = 0

    def mark(
        self, chat_id: int, message_id: int, stage: Stage, *, session: str, thread: int | None = None
    ) -> None:
        """Note that the person's message reached ``stage``; shown soon, in the background."""
        self._pending[(chat_id, message_id)] = (stage, session, thread)
        self._wake.set()

    async def run(self) -> None:
        """Show the noted stages, oldest message first, forever."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._pending:
                (chat_id, message_id), (stage, session, thread) = next(iter(self._pending.items()))
                del self._pending[(chat_id, message_id)]
                await self._show(chat_id, message_id, stage, session, thread)
                self.shown += 1

    async def _show(
        self, chat_id: int, message_id: int, stage: Stage, session: str, thread: int | None
    ) -> None:
        """One reaction (or the fallback reply); never raises: a receipt is not worth an update."""
        try:
            if chat_id not in self._refused:
                try:
                    await self._tg.react(chat_id, message_id, self._emoji(stage))
                    return
                except TelegramUnavailable as exc:
                    if "REACTION" not in str(exc).upper():
                        raise
                    self._refused.add(chat_id)
                    self._observer.emit(Event("reactions_refused", level="info", reason=str(exc)))
            if stage == "delivered":
                await self._tg.send(
                    chat_id,
                    f"✓ delivered to {session}",
                    reply_to=message_id,
                    thread=thread,
                    priority=Priority.URGENT,
                )
        except TelegramUnavailable as exc:
            self._observer.emit(
                Event(
                    "receipt_failed",
                    level="warning",
                    session=session,
                    reason=str(exc),
                    fields={"stage": stage},
                )
            )
