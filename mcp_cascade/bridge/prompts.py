"""Prompts: questions, replies and permission prompts that sessions send to the person.

Each prompt is recorded in the ledger *before* it is sent, so a tap on its
button always finds it; the message it became is recorded right after, so a
reply to it reaches the session that sent it. The person's chat is the one an
allowed person last wrote from (a bot cannot open a conversation itself).

A question or permission prompt may wait its turn behind Telegram's flood
limits (a 429 asks for seconds). The caller is answered within
``answer_within_s`` either way: with the message id once it is out, or with
``queued`` while the send goes on in the background. It is never answered with
an error for a prompt that will still arrive (the session would ask again, and
the person would see the question twice). Prompts recorded but never sent (the
bridge stopped first) are sent when the bridge starts again: :meth:`Prompts.resend`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
from telegram import Message

from mcp_cascade.bridge.access import Access
from mcp_cascade.bridge.files import PHOTO_SUFFIXES, FileRefused, attachment
from mcp_cascade.bridge.flood import Priority
from mcp_cascade.bridge.ledger import Ledger, Prompt
from mcp_cascade.bridge.render import render, split
from mcp_cascade.bridge.telegram import TelegramClient, TelegramUnavailable, truncate
from mcp_cascade.bridge.topics import Topics
from mcp_cascade.bridge.updates import button_data
from mcp_cascade.errors import CascadeError
from mcp_cascade.events import Event, Observer
from mcp_cascade.response import Response
from mcp_cascade.sessions import read_session

T = TypeVar("T")
_LABEL_MAX = 60
# Unsent prompts younger than this are sent when the bridge starts; older ones are stale questions.
RESEND_WITHIN_S = 3600.0


def _buttons(prompt: Prompt) -> list[list[tuple[str, str]]] | None:
    """Allow / Deny for a permission prompt; one button per option for a question (none: reply to it)."""
    if prompt.kind == "permission":
        return [
            [
                ("✅ Allow", button_data("p", prompt.token, "a")),
                ("❌ Deny", button_data("p", prompt.token, "d")),
            ]
        ]
    rows = [
        [(truncate(option, _LABEL_MAX), button_data("q", prompt.token, str(i)))]
        for i, option in enumerate(prompt.options)
    ]
    return rows or None


class NoRecipient(CascadeError):
    """Nobody is allowed yet, so there is no chat to write to."""


class ChatNotAllowed(CascadeError):
    """A session asked to write into a chat no allowed person uses."""


class PartialReply(TelegramUnavailable):
    """A long reply failed part-way: the message says which parts arrived."""


class Prompts:
    """Sends for sessions; records what it sent in the ledger."""

    def __init__(
        self,
        telegram: TelegramClient,
        ledger: Ledger,
        access: Access,
        observer: Observer,
        topics: Topics | None = None,
        home: Path | None = None,
        answer_within_s: float = 3.0,
    ) -> None:
        self._home = home or Path()
        self._answer_within = answer_within_s
        self._sends: anyio.abc.TaskGroup | None = None
        self._tg = telegram
        self._ledger = ledger
        self._access = access
        self._observer = observer
        self._topics = topics

    async def _send(self, chat_id: int, session: str, text: Any, **kw: Any) -> Message:
        if self._topics is None:
            return await self._tg.send(chat_id, text, **kw)
        return await self._topics.send(chat_id, session, text, **kw)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)

    async def _chat(self) -> int:
        users = await self._io(self._access.users)
        if not users:
            raise NoRecipient(
                "nobody is paired with the bot yet: message the bot, then run mcp-cascade bridge pair CODE"
            )
        chats = await self._io(self._ledger.chats)
        return chats[0] if chats else min(users)

    def sends_in(self, tg: anyio.abc.TaskGroup) -> None:
        """Run prompt sends in ``tg``, so a send outlives the API call that asked for it."""
        self._sends = tg

    async def _send_prompt(self, prompt: Prompt) -> dict[str, Any]:
        if self._sends is None:  # no background to leave it to: the caller waits for Telegram
            return await self._deliver_prompt(prompt)
        done = anyio.Event()
        outcome: list[dict[str, Any] | Exception] = []

        async def send() -> None:
            try:
                outcome.append(await self._deliver_prompt(prompt))
            except Exception as exc:
                outcome.append(exc)
            finally:
                done.set()

        self._sends.start_soon(send)
        with anyio.move_on_after(self._answer_within):
            await done.wait()
        if not outcome:
            return {"request_id": prompt.request_id, "chat_id": prompt.chat_id, "queued": True}
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]

    async def resend(self, recorded_before: float) -> int:
        """Send the prompts recorded before ``recorded_before`` and never sent (the bridge stopped first)."""
        unsent = await self._io(self._ledger.unsent, recorded_before - RESEND_WITHIN_S, recorded_before)
        for prompt in unsent:
            try:
                await self._deliver_prompt(prompt)
            except Exception:
                continue
        return len(unsent)

    async def _deliver_prompt(self, prompt: Prompt) -> dict[str, Any]:
        priority = Priority.URGENT if prompt.kind == "permission" else Priority.NORMAL
        try:
            message = await self._send(
                prompt.chat_id, prompt.session, prompt.text, buttons=_buttons(prompt), priority=priority
            )
        except Exception as exc:
            self._observer.emit(
                Event(
                    "prompt_failed",
                    level="error",
                    session=prompt.session,
                    reason=str(exc),
                    fields={"kind": prompt.kind, "request_id": prompt.request_id},
                )
            )
            raise
        await self._io(self._ledger.sent, prompt.chat_id, message.message_id, prompt.session, prompt.token)
        self._observer.emit(
            Event(
                "prompt_sent",
                session=prompt.session,
                fields={
                    "kind": prompt.kind,
                    "request_id": prompt.request_id,
                    "message_id": message.message_id,
                },
            )
        )
        return {"request_id": prompt.request_id, "chat_id": prompt.chat_id, "message_id": message.message_id}

    async def ask(self, session: str, question: str, options: Sequence[str]) -> dict[str, Any]:
        """A question with one button per option (or none: the person replies to it)."""
        chat = await self._chat()
        hint = "" if options else "\n\n(Reply to this message to answer.)"
        text = truncate(f"❓ {session}\n\n{question}", 4096 - len(hint)) + hint
        prompt = await self._io(self._ledger.new_prompt, "ask", session, chat, text, tuple(options))
        return await self._send_prompt(prompt)

    async def permission(
        self, session: str, request_id: str, tool_name: str, description: str, input_preview: str
    ) -> dict[str, Any]:
        """Claude Code's permission prompt, with Allow / Deny (and the ``yes CODE`` / ``no CODE`` hint)."""
        chat = await self._chat()
        footer = f'\n\nTap a button, or reply "yes {request_id}" / "no {request_id}".'
        body = f"🔐 {session} wants to use {tool_name or 'a tool'}"
        for part in (description, input_preview):
            if part.strip():
                body += f"\n\n{part.strip()}"
        text = truncate(body, 4096 - len(footer)) + footer
        prompt = await self._io(self._ledger.new_prompt, "permission", session, chat, text, (), request_id)
        return await self._send_prompt(prompt)

    async def reply(self, session: str, chat_id: int, text: str, files: Sequence[str] = ()) -> dict[str, Any]:
        """Claude's Markdown, rendered and split into parts, then the attached files; each sent alone.

        Each part (and file) is retried on its own; when one still fails after
        others arrived, the error says which did.
        """
        allowed = await self._io(self._access.users)
        if chat_id not in allowed and chat_id not in await self._io(self._ledger.chats):
            raise ChatNotAllowed(f"chat {chat_id} is not a chat of an allowed Telegram user")
        paths = [await self._io(attachment, await self._cwd(session), name) for name in files]
        thread = await self._topics.thread(chat_id, session) if self._topics is not None else None
        parts = split(render(text, header="" if thread is not None else f"💬 {session}\n"))
        sends: list[Callable[[], Awaitable[Message]]] = [
            partial(self._send, chat_id, session, part, priority=Priority.BULK) for part in parts
        ]
        sends += [partial(self._send_file, chat_id, path, thread) for path in paths]
        ids: list[int] = []
        for number, send in enumerate(sends, 1):
            try:
                message = await send()
            except TelegramUnavailable as exc:
                if not ids:
                    raise
                raise PartialReply(
                    f"parts 1-{len(ids)} of {len(sends)} arrived (message ids {ids}); "
                    f"part {number} failed: {exc}"
                ) from exc
            await self._io(self._ledger.sent, chat_id, message.message_id, session)
            ids.append(message.message_id)
        return {"chat_id": chat_id, "message_id": ids[0], "message_ids": ids, "parts": len(sends)}

    async def _cwd(self, session: str) -> str:
        info = await self._io(read_session, self._home, session)
        if info is None:
            raise FileRefused(f"session {session} is not running, so its folder is unknown")
        return info.cwd

    async def _send_file(self, chat_id: int, path: Path, thread: int | None) -> Message:
        data = await anyio.to_thread.run_sync(path.read_bytes)
        photo = path.suffix.lower() in PHOTO_SUFFIXES
        return await self._tg.send_file(chat_id, path.name, data, photo=photo, caption="", thread=thread)

    async def ack(self, response: Response, session: str, reason: str) -> None:
        """The Sender's AckHook: tier 2's direct word that the answer is kept (tier 1 did not take it)."""
        if response.chat_id is None:
            return
        try:
            message = await self._tg.send(
                response.chat_id,
                f"⏳ Queued for {session} ({reason}): it reaches the session as soon as it can take it.",
                reply_to=response.message_id,
                priority=Priority.URGENT,  # a receipt: before any long reply waiting for its turn
            )
        except TelegramUnavailable as exc:
            self._observer.emit(
                Event(
                    "ack_failed", level="warning", response_id=response.id, session=session, reason=str(exc)
                )
            )
            return
        await self._io(self._ledger.sent, response.chat_id, message.message_id, session)
