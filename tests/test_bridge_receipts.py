"""Receipts: the bot's reactions follow a message's stages; where reactions are off, a short reply."""

from __future__ import annotations

import anyio
import pytest

from mcp_cascade.bridge.receipts import Receipts, Stage
from mcp_cascade.bridge.telegram import TelegramClient
from mcp_cascade.events import NullObserver
from mcp_cascade.reactions import REACTIONS
from mcp_cascade.testing import random_token
from mcp_cascade.testing.fake_api import FakeTelegram

pytestmark = pytest.mark.anyio
EMOJI: dict[Stage, str] = {"accepted": "👀", "delivered": "👌", "waiting": "😴"}


async def test_reactions_show_each_stage_and_a_chat_without_reactions_gets_one_short_reply(
    fake: FakeTelegram,
) -> None:
    group = -1009
    fake.disable_reactions(group)
    async with TelegramClient(random_token(), fake.base_url, NullObserver()) as tg:
        receipts = Receipts(tg, EMOJI.__getitem__, NullObserver())
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(receipts.run)
            receipts.mark(42, 7, "accepted", session="proj-a")
            await fake.wait_for(lambda: fake.reactions(42, 7))
            receipts.mark(42, 7, "waiting", session="proj-a")
            await fake.wait_for(lambda: len(fake.reactions(42, 7)) == 2)
            receipts.mark(42, 7, "delivered", session="proj-a")
            await fake.wait_for(lambda: len(fake.reactions(42, 7)) == 3)
            receipts.mark(group, 3, "accepted", session="proj-a")
            receipts.mark(group, 4, "delivered", session="proj-a")
            (note,) = await fake.wait_for(lambda: fake.messages(group))
            tasks.cancel_scope.cancel()
    assert fake.reactions(42, 7) == ["👀", "😴", "👌"]
    assert fake.reactions(group, 4) == []
    assert note.text == "✓ delivered to proj-a" and note.reply_to == 4  # nothing said for "accepted"


def test_the_configurable_emoji_are_telegrams_reaction_set() -> None:
    assert set(EMOJI.values()) <= REACTIONS
    assert "✅" not in REACTIONS and len(REACTIONS) == 73
