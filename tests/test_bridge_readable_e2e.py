"""What the person sees, end to end (fake Bot API → bridge subprocess → serve subprocess).

Receipts as reactions, a long Markdown reply as valid parts, and flood control
measured by the fake's own limits: a burst never draws a 429, and a forced 429
is waited out in full.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.bridge.render import render, split
from mcp_cascade.testing.fake_api import FakeTelegram, FloodRules
from tests.bridge_helpers import ALICE, allow, bridge, greet, message_with, sessions, tool_json
from tests.helpers import sign
from tests.test_bridge_render import long_markdown

pytestmark = pytest.mark.anyio
# Telegram's limits scaled up ten-fold, so a burst of 100 takes seconds, not minutes; the fake
# refuses anything above about the bridge's pace plus its burst, twice over.
FAST = {
    "MCP_CASCADE_FLOOD_CHAT_PER_S": "10",
    "MCP_CASCADE_FLOOD_BURST": "3",
    "MCP_CASCADE_FLOOD_GROUP_PER_MIN": "400",
}
RULES = FloodRules(chat=(20, 1.0), group=(40, 3.0), total=(60, 1.0))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(flood=RULES).serving() as running:
        yield running


async def test_reactions_follow_accepted_then_delivered_and_a_long_reply_arrives_as_valid_parts(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake, env=FAST):
        await greet(fake)
        sent = fake.message(ALICE, "go ahead")
        message_id = sent["message"]["message_id"]
        await a.wait_channel(1)
        shown = await fake.wait_for(lambda: fake.reactions(ALICE.id, message_id)[-1:] == ["👌"])
        assert shown
        assert fake.reactions(ALICE.id, message_id) in (["👀", "👌"], ["👌"])  # a stage may be overtaken

        markdown = long_markdown(12_000)
        said = tool_json(await a.call_tool("reply", {"chat_id": ALICE.id, "text": markdown}))
        expected = render(markdown, header="💬 proj-a\n")
        parts = [m for m in fake.messages(ALICE.id) if m.message_id in said["message_ids"]]
        assert len(parts) == said["parts"] == len(split(expected)) >= 3
        assert "".join(p.text for p in parts) == expected.text  # the fake checked every part's entities
        assert "```" not in expected.text and "**" not in expected.text
        assert all(p.entities for p in parts)
        assert {e["type"] for p in parts for e in p.entities or []} >= {"bold", "pre", "code", "text_link"}

        # the second part fails for good: the tool says which parts arrived
        fake.fail("sendMessage", 400, after=1, description="Bad Request: forced")
        failed = await a.call_tool("reply", {"chat_id": ALICE.id, "text": markdown})
        assert failed.get("isError")
        assert f"parts 1-1 of {len(parts)} arrived" in failed["content"][0]["text"]
    assert fake.flood.violations == 0


async def test_a_burst_of_100_never_draws_a_429_and_a_forced_429_is_waited_out_in_full(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with bridge(home, fake, env=FAST) as running:
        await greet(fake)
        info = running.info()
        assert info is not None
        secret = (home / "secret").read_text().strip()

        async def reply(http: httpx.AsyncClient, text: str) -> int:
            raw = httpx.Request("POST", "/", json={"session": "proj-a", "chat_id": ALICE.id, "text": text})
            body = raw.read()
            headers = sign(secret, f"out:{uuid.uuid4().hex}", body)
            answer = await http.post(info["api_url"] + "/api/reply", content=body, headers=headers)
            return answer.status_code

        # 32 sessions' calls at a time (under the API's connection cap); all 100 queue up in the bridge
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=32)) as http:
            statuses: list[int] = []

            async def one(n: int) -> None:
                statuses.append(await reply(http, f"burst {n}"))

            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(one, n)
            assert statuses == [200] * 100
            sends = [c for c in fake.calls_of("sendMessage") if c.params.get("chat_id") == ALICE.id]
            assert len(sends) >= 100 and all(c.status == 200 for c in sends)
            assert fake.flood.violations == 0

            fake.fail("sendMessage", 429, retry_after=2)
            assert await reply(http, "after the flood") == 200
        await fake.wait_for(message_with(fake, ALICE.id, "after the flood"))
        flooded = [c for c in fake.calls_of("sendMessage") if "after the flood" in str(c.params.get("text"))]
        assert [c.status for c in flooded] == [429, 200]
        waited = flooded[1].at - flooded[0].at
        assert 2.0 <= waited < 2.0 + 3.0  # never early; the upper bound is only a generous sanity bound
        assert fake.flood.violations == 0
