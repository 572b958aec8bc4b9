"""The Telegram adapter: python-telegram-bot's ``Bot`` with retries that honour ``retry_after``.

Every call the bridge makes to the Bot API goes through :meth:`TelegramClient.call`:
a 429 waits exactly the ``retry_after`` Telegram asked for, a 5xx or network
failure waits an exponential backoff, a 4xx that retrying cannot fix is raised
at once. Reachability (last success, last failure) feeds ``/health/bridge``.
"""

from __future__ import annotations

import datetime as dtm
import json
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from telegram import (
    Bot,
    ForumTopic,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    MessageEntity,
    ReactionTypeEmoji,
    ReplyParameters,
)
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBUserWarning

from mcp_cascade.bridge.flood import Priority, Scheduler
from mcp_cascade.bridge.render import Rendered
from mcp_cascade.bridge.updates import scalar
from mcp_cascade.clock import SYSTEM, Clock, Random, system_random
from mcp_cascade.errors import CascadeError
from mcp_cascade.events import Event, Observer
from mcp_cascade.send.retry import Backoff

T = TypeVar("T")
MAX_TEXT = 4096
_ELLIPSIS = "…"
_POLL_READ_SLACK_S = 5.0  # beyond a long poll's own timeout, as the getUpdates connection's read timeout
# getUpdates is asked for raw (see TelegramClient.get_updates): the library would warn at each poll.
warnings.filterwarnings("ignore", r"Please use 'Bot\.getUpdates'", PTBUserWarning)


class TelegramUnavailable(CascadeError):
    """A Bot API call failed for good (a 4xx, or retries ran out of time)."""


class TokenRejected(CascadeError):
    """Telegram does not know this bot token."""


TELEGRAM_BACKOFF = Backoff(initial_s=0.5, cap_s=30.0)
"""Between Bot API retries: 0.5 s doubling to 30 s (Telegram asks for seconds, not milliseconds)."""


def retry_wait(backoff: Backoff, attempt: int, exc: TelegramError, draw: float) -> float:
    """Seconds before retry number ``attempt`` (0-based): what a 429 asked for, else the backoff."""
    if isinstance(exc, RetryAfter):
        return max(0.0, retry_after_s(exc))
    return backoff.delay(attempt, draw)


def retry_after_s(exc: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB 22 warns that the int form will become a timedelta
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def truncate(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` UTF-16 units, with an ellipsis when cut."""
    if _units(text) <= limit:
        return text
    return text[: _fit(text, limit - 1)] + _ELLIPSIS


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """The longest prefix length (in characters) whose UTF-16 length is at most ``limit``."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


@dataclass
class Reachability:
    """What the bridge knows of Telegram right now."""

    last_ok: float | None = None
    last_poll: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0

    def snapshot(self, now: float) -> dict[str, Any]:
        """For /health/bridge, at unix time ``now``."""
        return {
            "reachable": self.failures == 0 and self.last_ok is not None,
            "last_ok_age_s": None if self.last_ok is None else round(now - self.last_ok, 3),
            "last_poll_age_s": None if self.last_poll is None else round(now - self.last_poll, 3),
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "last_error_age_s": None if self.last_error_at is None else round(now - self.last_error_at, 3),
        }


Buttons = Sequence[Sequence[tuple[str, str]]]


class TelegramClient:
    """One bot's Bot API, used as an async context manager."""

    def __init__(
        self,
        token: str,
        base_url: str,
        observer: Observer,
        *,
        backoff: Backoff | None = None,
        scheduler: Scheduler | None = None,
        clock: Clock = SYSTEM,
        random: Random | None = None,
    ) -> None:
        self._bot = Bot(
            token,
            base_url=base_url,
            base_file_url=file_base_url(base_url),
            request=HTTPXRequest(connection_pool_size=8, read_timeout=15.0, connect_timeout=5.0),
            get_updates_request=HTTPXRequest(connection_pool_size=1, read_timeout=5.0, connect_timeout=5.0),
        )
        self._observer = observer
        self._backoff = backoff or TELEGRAM_BACKOFF
        self._clock = clock
        self._random = random or system_random()
        self.scheduler = scheduler or Scheduler(clock=clock)
        self.reach = Reachability()
        self.username = ""

    async def __aenter__(self) -> TelegramClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await self._bot.shutdown()

    def reachability(self) -> dict[str, Any]:
        """What the bridge knows of Telegram now (for /health/bridge)."""
        return self.reach.snapshot(self._clock.wall())

    async def start(self, deadline_s: float) -> None:
        """Check the token (getMe) and drop any webhook, so long polling is allowed."""
        me = await self.call("getMe", self._bot.get_me, deadline_s=deadline_s)
        self.username = me.username or ""
        await self.call("deleteWebhook", self._bot.delete_webhook, deadline_s=deadline_s)

    def _ok(self) -> None:
        self.reach.last_ok = self._clock.wall()
        self.reach.failures = 0

    def _failed(self, method: str, reason: str) -> None:
        self.reach.failures += 1
        self.reach.last_error = f"{method}: {reason}"
        self.reach.last_error_at = self._clock.wall()

    async def call(
        self,
        method: str,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline_s: float = 60.0,
        chat: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> T:
        """``fn()`` with retries until ``deadline_s``; 4xx other than 429 are raised at once.

        With ``chat``, every attempt waits for the chat's turn in the flood
        scheduler, and a 429 blocks the chat for exactly its ``retry_after``.
        """
        give_up = self._clock.monotonic() + deadline_s
        attempt = 0
        while True:
            try:
                if chat is not None:
                    await self.scheduler.turn(chat, priority)
                result = await fn()
            except InvalidToken as exc:
                self._failed(method, "token rejected")
                raise TokenRejected(
                    "Telegram rejected the bot token (check TELEGRAM_BOT_TOKEN or the token file)"
                ) from exc
            except (BadRequest, Forbidden) as exc:
                self._ok()  # Telegram answered; the request itself is wrong
                raise TelegramUnavailable(f"{method}: {exc.message}") from exc
            except TelegramError as exc:
                wait = retry_wait(self._backoff, attempt, exc, self._random())
                self._failed(method, exc.message)
                self._observer.emit(
                    Event(
                        "telegram_retry",
                        level="warning",
                        reason=f"{method}: {exc.message}",
                        fields={
                            "method": method,
                            "attempt": attempt + 1,
                            "wait_s": round(wait, 3),
                            "conflict": isinstance(exc, Conflict),
                        },
                    )
                )
                if self._clock.monotonic() + wait > give_up:
                    raise TelegramUnavailable(
                        f"{method}: {exc.message} (gave up after {deadline_s:g} s)"
                    ) from exc
                if chat is not None and isinstance(exc, RetryAfter):
                    self.scheduler.retry_after(chat, wait)  # the next turn waits it out, never less
                else:
                    await self._clock.sleep(wait)
                attempt += 1
                continue
            self._ok()
            return result

    async def get_updates(self, offset: int | None, timeout_s: int) -> list[tuple[int, str]]:
        """One long poll: each update's id and its JSON as sent; errors are raised (the poll loop retries).

        Not ``Bot.get_updates``, which parses the whole batch: one update the library cannot read would
        fail every poll. Each is read alone later, and dead-lettered if it cannot be."""
        self.reach.last_poll = self._clock.wall()
        kwargs: dict[str, Any] = {"timeout": timeout_s, "allowed_updates": ["message", "callback_query"]}
        if offset is not None:
            kwargs["offset"] = offset
        try:
            raw = await self._bot.do_api_request(
                "getUpdates", api_kwargs=kwargs, read_timeout=_POLL_READ_SLACK_S + timeout_s
            )
        except EndPointNotFound as exc:  # getUpdates always exists: the token was rejected (after start)
            raise InvalidToken(str(exc)) from exc
        self._ok()
        return [(int(update["update_id"]), json.dumps(update)) for update in raw]

    async def send(
        self,
        chat_id: int,
        text: str | Rendered,
        *,
        buttons: Buttons | None = None,
        reply_to: int | None = None,
        thread: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Message:
        """Send ``text`` (plain, or rendered with entities; never a parse mode) with optional buttons."""
        rendered = text if isinstance(text, Rendered) else Rendered(truncate(text))
        markup = (
            InlineKeyboardMarkup(
                [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in buttons]
            )
            if buttons
            else None
        )
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        return await self.call(
            "sendMessage",
            lambda: self._bot.send_message(
                chat_id,
                rendered.text,
                entities=_entities(rendered),
                reply_markup=markup,
                reply_parameters=reply,
                message_thread_id=thread,
            ),
            chat=chat_id,
            priority=priority,
        )

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        """Replace a message's text and remove its buttons ("not modified" counts as done)."""
        try:
            await self.call(
                "editMessageText",
                lambda: self._bot.edit_message_text(truncate(text), chat_id=chat_id, message_id=message_id),
                chat=chat_id,
                priority=Priority.URGENT,
            )
        except TelegramUnavailable as exc:
            if "not modified" not in str(exc):
                raise

    async def toast(self, callback_query_id: str, text: str) -> None:
        """Answer a button tap with a short notice; an expired query is not an error worth retrying."""
        try:
            await self.call(
                "answerCallbackQuery",
                lambda: self._bot.answer_callback_query(callback_query_id, text=truncate(text, 200)),
                deadline_s=15.0,
            )
        except TelegramUnavailable as exc:
            self._observer.emit(Event("toast_skipped", level="info", reason=str(exc)))

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        """Set the bot's reaction on a person's message (replacing its previous one)."""
        await self.call(
            "setMessageReaction",
            lambda: self._bot.set_message_reaction(chat_id, message_id, [ReactionTypeEmoji(emoji)]),
            chat=chat_id,
            priority=Priority.URGENT,
            deadline_s=30.0,
        )

    async def send_file(
        self, chat_id: int, name: str, data: bytes, *, photo: bool, caption: str, thread: int | None
    ) -> Message:
        """``data`` as a photo (shown inline) or a document (a file to save)."""
        upload, text = InputFile(data, filename=name), truncate(caption, 1024)
        bot = self._bot
        method, fn = (
            ("sendPhoto", lambda: bot.send_photo(chat_id, upload, caption=text, message_thread_id=thread))
            if photo
            else (
                "sendDocument",
                lambda: bot.send_document(chat_id, upload, caption=text, message_thread_id=thread),
            )
        )
        return await self.call(method, fn, chat=chat_id, priority=Priority.BULK)

    async def download(self, file_id: str, limit: int) -> tuple[bytes, str]:
        """A file a person sent, with its name on Telegram's side; refused above ``limit`` bytes."""
        info = await self.call("getFile", lambda: self._bot.get_file(file_id), deadline_s=30.0)
        if info.file_size is not None and info.file_size > limit:
            raise FileTooLarge(f"the file has {info.file_size} bytes; the limit is {limit}")
        path = info.file_path or ""
        if scalar(path) != path:  # no URL can name it, so no retry can fetch it: the file's own fault
            raise TelegramUnavailable(f"getFile: the file's path {path[-60:]!r} is not Unicode text")
        data = bytes(await self.call("downloadFile", info.download_as_bytearray, deadline_s=120.0))
        if len(data) > limit:
            raise FileTooLarge(f"the file has {len(data)} bytes; the limit is {limit}")
        return data, (info.file_path or "").rsplit("/", 1)[-1]

    async def create_topic(self, chat_id: int, name: str) -> int:
        """A new forum topic; its message_thread_id."""
        topic: ForumTopic = await self.call(
            "createForumTopic",
            lambda: self._bot.create_forum_topic(chat_id, truncate(name, 128)),
            chat=chat_id,
            priority=Priority.URGENT,
        )
        return topic.message_thread_id

    async def topic(self, chat_id: int, thread: int, action: str, name: str | None = None) -> None:
        """``rename``, ``close`` or ``reopen`` a forum topic ("not modified" counts as done)."""
        bot, title = self._bot, truncate(name or "", 128)
        calls: dict[str, tuple[str, Callable[[], Awaitable[bool]]]] = {
            "rename": ("editForumTopic", lambda: bot.edit_forum_topic(chat_id, thread, title)),
            "close": ("closeForumTopic", lambda: bot.close_forum_topic(chat_id, thread)),
            "reopen": ("reopenForumTopic", lambda: bot.reopen_forum_topic(chat_id, thread)),
        }
        method, fn = calls[action]
        try:
            await self.call(method, fn, chat=chat_id, priority=Priority.NORMAL)
        except TelegramUnavailable as exc:
            if "NOT_MODIFIED" not in str(exc).upper().replace(" ", "_"):
                raise


class FileTooLarge(CascadeError):
    """A file is over the Bot API's download limit or the configured cap."""


def file_base_url(base_url: str) -> str:
    """The file download base for an API base (``…/bot`` → ``…/file/bot``)."""
    root = base_url.rstrip("/")
    return (root.removesuffix("/bot") if root.endswith("/bot") else root) + "/file/bot"


def _entities(rendered: Rendered) -> list[MessageEntity] | None:
    if not rendered.entities:
        return None
    return [
        MessageEntity(e.type, e.offset, e.length, url=e.url, language=e.language) for e in rendered.entities
    ]
