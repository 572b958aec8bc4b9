"""A topic per session in a forum group, end to end (fake Bot API → bridge → two serves).

Each session gets its own topic on first need; what a person writes in a topic
reaches that topic's session only; a session's questions and replies land in
its topic; the mapping survives a bridge restart; a deleted topic is made again;
a topic closes when its session ends and reopens when it returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp_cascade.testing.fake_api import FakeTelegram
from mcp_cascade.testing.fake_forum import Topic
from tests.bridge_helpers import ALICE, allow, bridge, message_with, sessions, tool_json
from tests.test_bridge_readable_e2e import FAST, RULES

pytestmark = pytest.mark.anyio
GROUP = -1001234567890


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(flood=RULES).serving() as running:
        running.make_forum(GROUP)
        yield running


def topic_of(fake: FakeTelegram, session: str) -> Topic | None:
    live = [t for t in fake.topics(GROUP) if session in t.name and not t.deleted]
    return live[-1] if live else None


async def test_two_sessions_get_two_topics_and_each_topic_talks_only_to_its_session(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a", "proj-b") as (a, b), bridge(home, fake, env=FAST) as running:
        fake.message(ALICE, "/start", chat_id=GROUP)  # in the group's General topic
        await fake.wait_for(message_with(fake, GROUP, "carries your answers"))

        asked = tool_json(await a.call_tool("ask_user", {"question": "Deploy?", "options": ["ship", "wait"]}))
        said = tool_json(await b.call_tool("reply", {"chat_id": GROUP, "text": "**B** is done"}))
        topic_a, topic_b = topic_of(fake, "proj-a"), topic_of(fake, "proj-b")
        assert topic_a is not None and topic_b is not None and topic_a.thread != topic_b.thread
        assert len(fake.topics(GROUP)) == 2
        question = await fake.wait_for(message_with(fake, GROUP, "Deploy?"))
        assert question.message_id == asked["message_id"] and question.thread == topic_a.thread
        (reply,) = [m for m in fake.messages(GROUP) if m.message_id == said["message_id"]]
        assert reply.thread == topic_b.thread and reply.text == "B is done"  # no session header in a topic
        assert reply.entities == [{"type": "bold", "offset": 0, "length": 1}]

        to_a = fake.message(ALICE, "for A", chat_id=GROUP, thread=topic_a.thread)
        fake.message(ALICE, "for B", chat_id=GROUP, thread=topic_b.thread)
        (note_a,) = await a.wait_channel(1)
        (note_b,) = await b.wait_channel(1)
        assert note_a["params"]["content"] == "for A" and note_b["params"]["content"] == "for B"
        assert len(a.channel()) == 1 and len(b.channel()) == 1
        mid = to_a["message"]["message_id"]
        await fake.wait_for(lambda: fake.reactions(GROUP, mid)[-1:] == ["👌"])

        # the mapping is durable: a restarted bridge keeps writing into the same topics
        running.kill()
        await running.wait_exit()
        await running.start()
        await running.wait_ready()
        tool_json(await a.call_tool("reply", {"chat_id": GROUP, "text": "A again"}))
        assert (await fake.wait_for(message_with(fake, GROUP, "A again"))).thread == topic_a.thread
        assert len(fake.topics(GROUP)) == 2

        # a topic someone deleted is made again, and the message lands there
        fake.delete_topic(GROUP, topic_b.thread)
        tool_json(await b.call_tool("reply", {"chat_id": GROUP, "text": "B again"}))
        new_b = topic_of(fake, "proj-b")
        assert new_b is not None and new_b.thread != topic_b.thread
        assert (await fake.wait_for(message_with(fake, GROUP, "B again"))).thread == new_b.thread

        # the session ends: its topic closes; it comes back: the topic reopens
        await a.ask_to_stop()
        await fake.wait_for(lambda: topic_a.closed, timeout=30)
        await a.start()
        await a.wait_session()
        await fake.wait_for(lambda: not topic_a.closed, timeout=30)
    assert fake.flood.violations == 0
