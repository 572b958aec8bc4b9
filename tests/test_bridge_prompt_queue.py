"""A question that must wait for Telegram (a 429) is answered at once as queued, and still goes out once.

Before, ``/api/ask`` answered only after Telegram took the question; a 429's
``retry_after`` (or the one-message-a-second pacing of a busy chat) outlasted
serve's request timeout, so ``ask_user`` failed while the question still went
out later, and a session that asked again put it twice in front of the person.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp_cascade.testing.fake_api import FakeTelegram
from tests.bridge_helpers import ALICE, allow, bridge, greet, message_with, sessions, tool_json

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram().serving() as running:
        yield running


def _questions(fake: FakeTelegram, needle: str) -> int:
    return sum(needle in m.text for m in fake.messages(ALICE.id))


async def test_a_question_held_by_a_429_is_answered_queued_and_arrives_once(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake):
        await greet(fake)
        fake.fail("sendMessage", 429, retry_after=6)
        asked = tool_json(await a.call_tool("ask_user", {"question": "Merge?", "options": ["merge"]}))
        assert asked.get("queued") is True and "message_id" not in asked, asked
        question = await fake.wait_for(message_with(fake, ALICE.id, "Merge?"), timeout=60)
        fake.press(ALICE, question, "merge")
        (note,) = await a.wait_channel(1, timeout=30)
        assert note["params"]["meta"]["request_id"] == asked["request_id"]
        assert _questions(fake, "Merge?") == 1


async def test_a_question_the_bridge_died_holding_is_sent_once_when_it_starts_again(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake) as running:
        await greet(fake)
        fake.fail("sendMessage", 429, retry_after=45)
        asked = tool_json(await a.call_tool("ask_user", {"question": "Rebase?", "options": ["yes"]}))
        assert asked.get("queued") is True, asked
        await fake.wait_for(lambda: any(c.status == 429 for c in fake.calls_of("sendMessage")))
        running.kill()
        assert await running.wait_exit() == -9
        await running.start()
        await running.wait_ready()
        question = await fake.wait_for(message_with(fake, ALICE.id, "Rebase?"), timeout=60)
        fake.press(ALICE, question, "yes")
        (note,) = await a.wait_channel(1, timeout=30)
        assert note["params"]["meta"]["request_id"] == asked["request_id"]
        assert _questions(fake, "Rebase?") == 1
