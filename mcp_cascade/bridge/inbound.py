"""Inbound: long polling into the outbox, and the outbox through the cascade into the sessions.

Two loops. The poller asks Telegram for updates from the outbox's offset and
makes each batch durable (with the next offset) before it polls again, which
is what commits the offset to Telegram. The processor takes the outbox in
update order: decide (routing), record the decision, deliver through the
sending cascade, give the person feedback, mark done. A transient failure
(disk, network, a session not reachable yet) waits and retries the same
update, so the order holds; a permanent one, the update's own content (it
cannot be read, or what it becomes breaks the response contract), is
dead-lettered: marked done with the reason, counted as quarantined, and
answered in the chat, so it never blocks the updates behind it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from telegram import Update

from mcp_cascade.bridge.files import BOT_API_DOWNLOAD_LIMIT, meta, save
from mcp_cascade.bridge.ledger import Ledger
from mcp_cascade.bridge.outbox import DEAD_LETTER, UpdateEntry, UpdateOutbox
from mcp_cascade.bridge.receipts import Receipts, Stage
from mcp_cascade.bridge.routing import Deliver, Drop, Router, Say, answer_label
from mcp_cascade.bridge.telegram import (
    TELEGRAM_BACKOFF,
    FileTooLarge,
    TelegramClient,
    TelegramUnavailable,
    TokenRejected,
)
from mcp_cascade.bridge.updates import Incoming, incoming
from mcp_cascade.clock import Random, system_random
from mcp_cascade.errors import CascadeError, InvalidResponse, Poisoned
from mcp_cascade.events import Event, Observer
from mcp_cascade.response import Response, from_dict
from mcp_cascade.send.cascade import Sender
from mcp_cascade.send.retry import Backoff

T = TypeVar("T")
POLL_TIMEOUT_S = 25


# Raised where an update's content is read or turned into a response: no retry can help.
_PERMANENT = (Poisoned, InvalidResponse)


class _NotYet(Exception):
    """Nothing durable came of this attempt; retry the update later."""


class Inbound:
    """The poller and the processor; run both in one task group."""

    def __init__(
        self,
        *,
        telegram: TelegramClient,
        outbox: UpdateOutbox,
        ledger: Ledger,
        router: Router,
        sender: Sender,
        observer: Observer,
        receipts: Receipts | None = None,
        home: Path | None = None,
        file_limit: Callable[[], int] = lambda: BOT_API_DOWNLOAD_LIMIT,
        poll_timeout_s: int = POLL_TIMEOUT_S,
        backoff: Backoff = TELEGRAM_BACKOFF,
        random: Random | None = None,
    ) -> None:
        self._receipts = receipts
        self._home = home or router.home
        self._file_limit = file_limit
        self._tg = telegram
        self._outbox = outbox
        self._ledger = ledger
        self._router = router
        self._sender = sender
        self._observer = observer
        self._poll_timeout_s = poll_timeout_s
        self._backoff = backoff
        self._random = random or system_random()
        self._wake = anyio.Event()
        self._outbox_limiter = anyio.CapacityLimiter(1)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._outbox_limiter)

    # --- poller -------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Long-poll forever; a rejected token ends the bridge (TokenRejected)."""
        attempt = 0
        while True:
            try:
                offset = await self._io(self._outbox.offset)
                updates = await self._tg.call(
                    "getUpdates",
                    partial(self._tg.get_updates, offset, self._poll_timeout_s),
                    deadline_s=math.inf,
                )
                if updates:
                    new = await self._io(self._outbox.ingest, updates)
                    self._observer.emit(
                        Event("polled", level="debug", fields={"updates": len(updates), "new": new})
                    )
                    self._wake.set()
                attempt = 0
            except TokenRejected:
                raise
            except Exception as exc:  # outbox not writable, a 4xx on getUpdates, a batch that cannot be read
                wait = self._backoff.delay(attempt, self._random())
                attempt += 1
                self._observer.emit(
                    Event("poll_failed", level="error", reason=str(exc), fields={"wait_s": round(wait, 3)})
                )
                await anyio.sleep(wait)

    # --- processor ----------------------------------------------------------------------------

    async def process(self) -> None:
        """Work through the outbox in update order, forever."""
        self._wake.set()  # whatever a previous run left undone goes first
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while entries := await self._io(self._outbox.pending, 64):
                for entry in entries:
                    await self._until_done(entry)

    async def _until_done(self, entry: UpdateEntry) -> None:
        attempt = 0
        while True:
            try:
                try:
                    await self._handle(entry)
                except _PERMANENT as exc:  # the update's own content: it steps aside, the lane moves on
                    await self._dead_letter(entry, exc)
                return
            except Exception as exc:  # transient (or unknown): log, wait, retry; never skip it
                wait = self._backoff.delay(attempt, self._random())
                attempt += 1
                self._observer.emit(
                    Event(
                        "update_retry",
                        level="warning" if isinstance(exc, _NotYet | CascadeError) else "error",
                        response_id=entry.response.id if entry.response else None,
                        session=entry.session,
                        reason=str(exc) or repr(exc),
                        fields={"update_id": entry.update_id, "attempt": attempt, "wait_s": round(wait, 3)},
                    )
                )
                await anyio.sleep(wait)
                refreshed = [
                    e for e in await self._io(self._outbox.pending, 64) if e.update_id == entry.update_id
                ]
                if not refreshed:
                    return
                entry = refreshed[0]

    async def _dead_letter(self, entry: UpdateEntry, exc: Exception) -> None:
        """Set an update aside for good, then count it, log it with its ids and tell its sender.

        Marked done first: should that write fail, the update is retried (and set aside again), never
        counted twice.
        """
        reason = str(exc)[:500] or type(exc).__name__
        await self._io(self._outbox.done, entry.update_id, DEAD_LETTER + reason)
        inc = _readable(entry)
        fields: dict[str, Any] = {"update_id": entry.update_id, "kind": "update"}
        if inc is not None:
            fields |= {"chat_id": inc.chat_id, "message_id": inc.message_id, "user_id": inc.user.id}
        self._observer.emit(
            Event(
                "quarantined",
                tier=2,
                level="error",
                response_id=entry.response.id if entry.response else (inc.response_id if inc else None),
                correlation_id=entry.response.correlation_id if entry.response else None,
                session=entry.session,
                reason=reason,
                fields=fields,
            )
        )
        if inc is not None and inc.kind != "other":
            await self._say(inc, f"That message cannot be delivered, so it was set aside: {reason}")

    async def _handle(self, entry: UpdateEntry) -> None:
        inc = _read(entry)
        if inc is None:
            await self._io(self._outbox.done, entry.update_id, "not from a person")
            return
        response, session, status = entry.response, entry.session, entry.note
        if entry.state == "new":
            decision = await anyio.to_thread.run_sync(self._router.decide, inc)
            if isinstance(decision, Drop):
                self._reject(inc, decision.reason)
                await self._io(self._outbox.done, entry.update_id, "dropped: " + decision.reason)
                return
            if isinstance(decision, Say):
                await self._say(inc, decision.text)
                await self._io(self._outbox.done, entry.update_id, "answered directly")
                return
            assert isinstance(decision, Deliver)
            response, session = decision.response, decision.session
            if inc.file is not None:
                try:
                    response = await self._fetch(inc, response, session)
                except (FileTooLarge, TelegramUnavailable) as exc:  # the file's own fault: say so, move on
                    await self._say(inc, f"That file did not reach {session}: {exc}")
                    await self._io(self._outbox.done, entry.update_id, f"file refused: {exc}")
                    return
            await self._io(self._outbox.route, entry.update_id, session, response)
            self._observer.emit(
                Event(
                    "routed",
                    response_id=response.id,
                    correlation_id=response.correlation_id,
                    session=session,
                    fields={"update_id": entry.update_id, "type": response.type},
                )
            )
        assert response is not None and session is not None
        if entry.state in ("new", "routed"):
            self._mark(inc, "accepted", session)
            receipt = await self._sender.deliver(response, session)
            if receipt.status == "failed":
                self._mark(inc, "waiting", session)
                reasons = "; ".join(f"tier {a.tier}: {a.reason}" for a in receipt.attempts)
                raise _NotYet(f"not durable anywhere yet ({reasons})")
            status = receipt.status
            await self._io(self._outbox.delivered, entry.update_id, status)
        self._mark(inc, "delivered" if status == "delivered" else "waiting", session)
        await self._feedback(inc, response, session, status or "delivered")
        await self._io(self._outbox.done, entry.update_id)

    async def _fetch(self, inc: Incoming, response: Response, session: str) -> Response:
        """Download the person's file into the session's home; the response's meta says where."""
        assert inc.file is not None
        limit = min(self._file_limit(), BOT_API_DOWNLOAD_LIMIT)
        if inc.file.size is not None and inc.file.size > limit:
            raise FileTooLarge(f"it has {inc.file.size} bytes; the limit is {limit}")
        data, _ = await self._tg.download(inc.file.file_id, limit)
        path = await anyio.to_thread.run_sync(save, self._home, session, inc.message_id, inc.file, data)
        body = response.to_dict()
        body["meta"] = {**(body.get("meta") or {}), **meta(path, inc.file, len(data))}
        return from_dict(body)

    def _mark(self, inc: Incoming, stage: Stage, session: str) -> None:
        if self._receipts is not None and inc.kind == "message":
            self._receipts.mark(inc.chat_id, inc.message_id, stage, session=session, thread=inc.thread)

    def _reject(self, inc: Incoming, reason: str) -> None:
        self._observer.emit(
            Event(
                "rejected",
                tier=2,
                response_id=inc.response_id,
                level="warning",
                reason=reason,
                fields={"user_id": inc.user.id, "chat_id": inc.chat_id, "kind": inc.kind},
            )
        )

    async def _say(self, inc: Incoming, text: str) -> None:
        try:
            if inc.kind == "callback" and inc.callback_id:
                await self._tg.toast(inc.callback_id, text)
            else:
                await self._tg.send(inc.chat_id, text, reply_to=inc.message_id)
        except TelegramUnavailable as exc:
            self._observer.emit(Event("say_failed", level="warning", reason=str(exc)))

    async def _feedback(self, inc: Incoming, response: Response, session: str, status: str) -> None:
        """The toast for a tap, and the prompt edited to show the answer with its buttons gone."""
        queued = status == "queued"
        prompt = await anyio.to_thread.run_sync(self._ledger.answered_by, response.id)
        where = f"queued for {session}" if queued else f"sent to {session}"
        try:
            if inc.kind == "callback" and inc.callback_id:
                label = answer_label(prompt) if prompt else "Answer"
                await self._tg.toast(inc.callback_id, f"{label} — {where}")
            if prompt is not None and prompt.message_id is not None:
                await self._tg.edit(
                    prompt.chat_id,
                    prompt.message_id,
                    f"{prompt.text}\n\n{answer_label(prompt)} ({inc.user.label()}, {where})",
                )
        except TelegramUnavailable as exc:
            self._observer.emit(
                Event(
                    "feedback_failed",
                    level="warning",
                    response_id=response.id,
                    session=session,
                    reason=str(exc),
                )
            )


def _read(entry: UpdateEntry) -> Incoming | None:
    """The update as the bridge sees it; Poisoned when its stored body cannot be read as one."""
    try:
        return incoming(Update.de_json(entry.body, None))
    except Poisoned:
        raise
    except Exception as exc:  # a pure function of the stored body: whatever fails here, fails again
        raise Poisoned("update", f"update {entry.update_id} cannot be read: {exc!r}"[:500]) from exc


def _readable(entry: UpdateEntry) -> Incoming | None:
    """The update, or None when it cannot be read (then nobody can be told)."""
    try:
        return _read(entry)
    except Poisoned:
        return None
