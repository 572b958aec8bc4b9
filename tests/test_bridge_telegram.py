"""The Telegram adapter against the fake Bot API: retry_after honoured, 5xx retried, 4xx not; text limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from telegram.error import RetryAfter, TelegramError

from mcp_cascade.bridge.telegram import (
    TelegramClient,
    TelegramUnavailable,
    TokenRejected,
    retry_wait,
    truncate,
)
from mcp_cascade.clock import FakeClock
from mcp_cascade.events import Event
from mcp_cascade.send.retry import Backoff
from mcp_cascade.testing import random_token
from mcp_cascade.testing.fake_api import FakeTelegram, FakeUser, utf16_len

pytestmark = pytest.mark.anyio
FAST = Backoff(initial_s=0.01, cap_s=0.05)


class Events:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    def emit(self, event: Event) -> None:
        self.seen.append(event)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram().serving() as running:
        yield running


@pytest.fixture
async def client(fake: FakeTelegram) -> AsyncIterator[TelegramClient]:
    async with TelegramClient(random_token(), fake.base_url, Events(), backoff=FAST) as tg:
        await tg.start(deadline_s=10)
        yield tg


def test_backoff_doubles_within_jitter_up_to_its_cap_and_yields_to_retry_after() -> None:
    b = Backoff(initial_s=0.5, cap_s=4.0)
    server_error = TelegramError("Bad Gateway")
    assert [retry_wait(b, n, server_error, 0.999999) for n in range(6)] == pytest.approx(
        [0.5, 1.0, 2.0, 4.0, 4.0, 4.0], rel=1e-5
    )
    assert [retry_wait(b, n, server_error, 0.0) for n in range(3)] == [0.25, 0.5, 1.0]
    assert retry_wait(b, 5, RetryAfter(7), 0.5) == 7
    assert retry_wait(b, 0, RetryAfter(0), 0.5) == 0


def test_truncate_marks_the_cut() -> None:
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"
    assert utf16_len(truncate("😀" * 10, 5)) <= 5


async def test_a_429_waits_exactly_as_long_as_telegram_asked(fake: FakeTelegram) -> None:
    clock = FakeClock()
    async with TelegramClient(random_token(), fake.base_url, Events(), backoff=FAST, clock=clock) as tg:
        fake.fail("sendMessage", 429, retry_after=7)
        message = await tg.send(42, "hello")
    assert [c.status for c in fake.calls_of("sendMessage")] == [429, 200]
    assert clock.slept == [7.0]  # what Telegram asked for, not the backoff's 10-50 ms
    assert message.message_id == fake.messages(42)[0].message_id


async def test_5xx_and_slow_answers_are_retried_until_they_succeed(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    fake.fail("sendMessage", 500)
    fake.fail("sendMessage", 502)
    await client.send(42, "hello")
    assert [c.status for c in fake.calls_of("sendMessage")] == [500, 502, 200]
    assert client.reachability()["reachable"] is True
    assert [m.text for m in fake.messages(42)] == ["hello"]


async def test_a_request_telegram_refuses_is_not_retried(fake: FakeTelegram, client: TelegramClient) -> None:
    with pytest.raises(TelegramUnavailable, match=r"(?i)message to edit not found"):
        await client.edit(42, 999, "new text")
    assert len(fake.calls_of("editMessageText")) == 1


async def test_retries_stop_at_the_deadline_with_the_last_reason(fake: FakeTelegram) -> None:
    clock = FakeClock()
    fake.fail("getMe", 503, times=1000)
    async with TelegramClient(
        random_token(), fake.base_url, Events(), backoff=FAST, clock=clock, random=lambda: 1.0
    ) as tg:
        with pytest.raises(TelegramUnavailable, match=r"gave up after 0\.3 s"):
            await tg.start(deadline_s=0.3)
        snapshot = tg.reachability()
    # 10, 20, 40, then 50 ms (the cap) while the next wait still ends before 300 ms.
    assert clock.slept == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05, 0.05, 0.05])
    assert snapshot["reachable"] is False and snapshot["consecutive_failures"] == len(clock.slept) + 1


async def test_an_unchanged_edit_and_an_expired_tap_are_not_errors(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    sent = await client.send(42, "same")
    await client.edit(42, sent.message_id, "same")
    await client.toast("no-such-query", "hi")
    assert fake.messages(42)[0].edits == 0


async def test_a_rejected_token_is_its_own_error_and_never_shows_the_token() -> None:
    token = random_token()
    async with (
        FakeTelegram(token="1:another").serving() as fake,
        TelegramClient(token, fake.base_url, Events(), backoff=FAST) as tg,
    ):
        with pytest.raises(TokenRejected) as rejected:
            await tg.start(deadline_s=5)
    assert token not in str(rejected.value)
    assert token.partition(":")[2] not in repr(rejected.value)


async def test_a_token_revoked_while_polling_is_rejected_not_retried() -> None:
    token = random_token()
    async with (
        FakeTelegram(token=token).serving() as fake,
        TelegramClient(token, fake.base_url, Events(), backoff=FAST) as tg,
    ):
        await tg.start(deadline_s=5)
        fake.message(FakeUser(42), "hello")
        ((update_id, body),) = await tg.get_updates(None, 0)  # each update raw, as Telegram sent it
        assert json.loads(body)["message"]["text"] == "hello" and update_id == json.loads(body)["update_id"]
        fake.token = "1:revoked"
        with pytest.raises(TokenRejected):
            await tg.call("getUpdates", lambda: tg.get_updates(update_id + 1, 0), deadline_s=5)


async def test_buttons_reach_telegram_as_inline_keyboard_rows(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    await client.send(42, "pick", buttons=[[("A", "q:0123456789:0")], [("B", "q:0123456789:1")]], reply_to=7)
    (message,) = fake.messages(42)
    assert message.buttons() == [
        {"text": "A", "callback_data": "q:0123456789:0"},
        {"text": "B", "callback_data": "q:0123456789:1"},
    ]
    assert message.reply_to == 7
    fake.press(FakeUser(42), message, "B")
    assert fake.pending_updates == 1
