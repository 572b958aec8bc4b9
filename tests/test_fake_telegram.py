"""The fake Bot API behaves like Telegram where the bridge depends on it, seen through python-telegram-bot."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter

from mcp_cascade.testing import random_token
from mcp_cascade.testing.fake_api import FakeTelegram, FakeUser

pytestmark = pytest.mark.anyio
ALICE = FakeUser(42, "Alice", "alice")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram().serving() as running:
        yield running


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(random_token(), base_url=fake.base_url) as client:
        yield client


async def test_updates_stay_until_an_offset_above_them_confirms_them(fake: FakeTelegram, bot: Bot) -> None:
    fake.message(ALICE, "one")
    fake.message(ALICE, "two")
    first = await bot.get_updates(timeout=0)
    again = await bot.get_updates(timeout=0)
    assert [u.message.text for u in first if u.message] == ["one", "two"]
    assert [u.update_id for u in again] == [u.update_id for u in first]
    rest = await bot.get_updates(offset=first[0].update_id + 1, timeout=0)
    assert [u.message.text for u in rest if u.message] == ["two"]
    assert fake.pending_updates == 1


async def test_a_long_poll_returns_as_soon_as_an_update_arrives(fake: FakeTelegram, bot: Bot) -> None:
    got: list[str] = []

    async def poll() -> None:
        updates = await bot.get_updates(timeout=30)
        got.extend(u.message.text or "" for u in updates if u.message)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await fake.wait_for(lambda: fake.polls == 1)
            fake.message(ALICE, "now")
    assert got == ["now"]


async def test_a_newer_poll_ends_an_older_one_with_409_conflict(fake: FakeTelegram, bot: Bot) -> None:
    errors: list[Exception] = []

    async def old_poll() -> None:
        try:
            await bot.get_updates(timeout=30)
        except Conflict as exc:
            errors.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(old_poll)
            await fake.wait_for(lambda: fake.polls == 1)
            async with Bot(random_token(), base_url=fake.base_url) as other:
                await other.get_updates(timeout=0)
    assert len(errors) == 1
    assert "terminated by other getUpdates request" in str(errors[0])


async def test_buttons_taps_answers_and_edits_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Allow", callback_data="p:0123456789:a")]])
    sent = await bot.send_message(ALICE.id, "may I?", reply_markup=markup)
    (shown,) = fake.messages(ALICE.id)
    assert shown.buttons() == [{"text": "Allow", "callback_data": "p:0123456789:a"}]
    fake.press(ALICE, shown, "Allow")
    fake.message(ALICE, "sure", reply_to=sent.message_id)
    tap, reply = await bot.get_updates(timeout=0)
    assert tap.callback_query is not None and tap.callback_query.data == "p:0123456789:a"
    assert tap.callback_query.message is not None and tap.callback_query.message.message_id == sent.message_id
    assert reply.message is not None and reply.message.reply_to_message is not None
    assert reply.message.reply_to_message.message_id == sent.message_id
    assert await bot.answer_callback_query(tap.callback_query.id, text="Allowed")
    assert fake.callback_answer(tap.callback_query.id) == {"text": "Allowed", "show_alert": None}
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(tap.callback_query.id, text="again")
    await bot.edit_message_text("may I?\n\nAllowed", chat_id=ALICE.id, message_id=sent.message_id)
    assert shown.text.endswith("Allowed") and shown.buttons() == [] and shown.edits == 1
    with pytest.raises(BadRequest, match=r"(?i)not modified"):
        await bot.edit_message_text("may I?\n\nAllowed", chat_id=ALICE.id, message_id=sent.message_id)


async def test_telegram_limits_are_enforced(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)too long"):
        await bot.send_message(ALICE.id, "x" * 4097)
    await bot.send_message(ALICE.id, "x" * 4096)
    with pytest.raises(BadRequest, match=r"(?i)too long"):
        await bot.send_message(ALICE.id, "😀" * 2049)  # 4098 UTF-16 units
    long_data = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="d" * 65)]])
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(ALICE.id, "hi", reply_markup=long_data)


async def test_faults_answer_429_with_retry_after_then_5xx_then_recover(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail("sendMessage", 429, retry_after=3)
    fake.fail("sendMessage", 502)
    with pytest.raises(RetryAfter) as flood:
        await bot.send_message(ALICE.id, "a")
    assert "Retry in 3 seconds" in str(flood.value)
    with pytest.raises(NetworkError):
        await bot.send_message(ALICE.id + 1, "b")
    await bot.send_message(ALICE.id + 1, "c")
    await bot.send_message(ALICE.id, "early")  # back before retry_after: counted
    assert [c.status for c in fake.calls_of("sendMessage")] == [429, 502, 200, 200]
    assert [m.text for m in fake.messages()] == ["c", "early"]
    assert fake.flood.violations == 1
    fake.fail("getMe", delay_s=0.3)
    started = time.monotonic()
    await bot.get_me()
    assert time.monotonic() - started >= 0.3


async def test_reply_markup_alone_can_be_replaced_or_removed(fake: FakeTelegram, bot: Bot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="a")]])
    sent = await bot.send_message(ALICE.id, "pick", reply_markup=markup)
    await bot.edit_message_reply_markup(chat_id=ALICE.id, message_id=sent.message_id, reply_markup=None)
    (shown,) = fake.messages(ALICE.id)
    assert shown.buttons() == [] and shown.text == "pick"
    with pytest.raises(BadRequest, match=r"(?i)not modified"):
        await bot.edit_message_reply_markup(chat_id=ALICE.id, message_id=sent.message_id, reply_markup=None)


async def test_only_the_configured_token_is_accepted() -> None:
    token = random_token()
    async with FakeTelegram(token=token).serving() as fake:
        async with Bot(token, base_url=fake.base_url) as good:
            assert (await good.get_me()).is_bot
        with pytest.raises(InvalidToken):
            async with Bot(random_token(), base_url=fake.base_url):
                pass


async def test_http_controls_play_the_person_and_read_the_bot(fake: FakeTelegram, bot: Bot) -> None:
    root = fake.base_url.removesuffix("/bot")
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Deny", callback_data="p:0123456789:d")]])
    sent = await bot.send_message(ALICE.id, "may I?", reply_markup=markup)
    async with httpx.AsyncClient(base_url=root) as http:
        said = await http.post("/_fake/message", json={"user_id": 42, "text": "hello"})
        tapped = await http.post(
            "/_fake/tap", json={"user_id": 42, "message_id": sent.message_id, "button": "Deny"}
        )
        messages = (await http.get("/_fake/messages", params={"chat_id": 42})).json()
        faulted = await http.post("/_fake/fault", json={"method": "getMe", "status": 500})
        bad = [
            await http.post("/_fake/message", json={"user_id": "x", "text": "hi"}),
            await http.post("/_fake/message", content=b"{not json"),
            await http.post("/_fake/tap", json={"user_id": 42, "message_id": 999, "button": "Deny"}),
            await http.post("/_fake/tap", json={"user_id": 42, "message_id": sent.message_id}),
            await http.post("/_fake/fault", json={"method": "getMe", "delay_s": -1}),
        ]
        state = (await http.get("/_fake/state")).json()
    assert said.status_code == 200 and tapped.status_code == 200 and faulted.status_code == 200
    assert messages[0]["text"] == "may I?"
    assert [r.status_code for r in bad] == [400, 400, 400, 400, 400]
    assert all(r.json()["error"] for r in bad)
    assert state["pending_updates"] == 2
    updates = await bot.get_updates(timeout=0)
    assert updates[0].message is not None and updates[0].message.text == "hello"
    assert updates[1].callback_query is not None and updates[1].callback_query.data == "p:0123456789:d"
    with pytest.raises(NetworkError):
        await bot.get_me()
