"""One Telegram update cannot stall the bridge: repaired where it can be, dead-lettered where it cannot.

Real processes throughout: the fake Bot API on loopback, ``mcp-cascade bridge`` and ``serve`` as
subprocesses. A transient failure (the session's inbox cannot be written) still holds the lane.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.bridge.updates import scalar
from mcp_cascade.ops.audit import read_audit
from mcp_cascade.ops.inspect.queue import list_queue
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.testing import BridgeProcess, ServeProcess
from mcp_cascade.testing.fake_api import FakeTelegram, FakeUser
from tests.bridge_helpers import ALICE, allow, bridge, greet, message_with, metric, sessions, tool_json

pytestmark = pytest.mark.anyio
EMOJI = "\U0001f600"  # two UTF-16 units: d83d de00
HIGH, LOW = "\ud83d", "\ude00"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram().serving() as running:
        yield running


@asynccontextmanager
async def a_current_b_replied(
    home: Path, fake: FakeTelegram
) -> AsyncIterator[tuple[ServeProcess, ServeProcess, BridgeProcess, int]]:
    """Sessions proj-a (the chat's current one) and proj-b (which wrote the message returned), a bridge."""
    allow(home, ALICE.id)
    async with sessions(home, "proj-a", "proj-b") as (a, b), bridge(home, fake) as running:
        await greet(fake)
        said = tool_json(await b.call_tool("reply", {"chat_id": ALICE.id, "text": "B is here"}))
        fake.message(ALICE, "/use proj-a")
        await fake.wait_for(message_with(fake, ALICE.id, "Now talking to proj-a"))
        yield a, b, running, said["message_id"]


async def test_text_sliced_mid_surrogate_pair_is_repaired_and_delivered(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    sliced = FakeUser(ALICE.id, "Al" + HIGH, "alice")  # a first name cut in the middle of an emoji, too
    async with sessions(home, "proj-a") as (a,), bridge(home, fake):
        await greet(fake)
        fake.message(sliced, "sliced " + HIGH)
        fake.message(ALICE, LOW + " low half alone")
        fake.message(ALICE, f"whole {EMOJI} after")
        notes = await a.wait_channel(3)
    assert [n["params"]["content"] for n in notes] == [
        "sliced \ufffd",
        "\ufffd low half alone",
        f"whole {EMOJI} after",
    ]
    assert len(a.channel()) == 3 and a.bad_lines == []


async def test_an_update_that_cannot_be_carried_steps_aside_and_the_lane_moves_on(
    home: Path, fake: FakeTelegram
) -> None:
    async with a_current_b_replied(home, fake) as (a, b, running, said):
        dated = fake.person_message(ALICE, ALICE.id, None, {"text": "written in 1970", "date": 0})
        huge = fake.person_message(ALICE, -(2**64), None, {"text": "from a chat id past 64 bits"})
        fake.message(ALICE, "to A behind the poison")
        fake.message(ALICE, "to B behind the poison", reply_to=said)

        (to_a,) = await a.wait_channel(1)
        (to_b,) = await b.wait_channel(1)
        assert to_a["params"]["content"] == "to A behind the poison"
        assert to_b["params"]["content"] == "to B behind the poison"
        note = await fake.wait_for(message_with(fake, ALICE.id, "set aside"))
        assert "$.timestamp" in note.text and "2000" in note.text
        assert note.reply_to == dated["message"]["message_id"]
        info = running.info()
        assert info is not None
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(info["api_url"] + "/metrics")).text
        assert metric(metrics, "mcp_cascade_quarantined_total", tier="2", reason="update") == 2

    dead = [item for item in list_queue(home) if item.where == "bridge/dead-letter"]
    assert sorted(item.id for item in dead) == [f"update:{dated['update_id']}", f"update:{huge['update_id']}"]
    assert any("message.chat.id" in item.reason for item in dead)
    trail = [r for r in read_audit(home) if r["event"] == "quarantined"]
    assert [(r["tier"], r["update_id"]) for r in trail] == [(2, dated["update_id"])]  # the other has no id
    assert trail[0]["response_id"] == f"tg:{ALICE.id}:{dated['message']['message_id']}"
    assert len(a.channel()) == 1 and len(b.channel()) == 1  # exactly once, after the bridge stopped


async def test_an_update_the_telegram_library_cannot_parse_is_dead_lettered_not_a_stuck_poll(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake) as running:
        await greet(fake)
        far = fake.person_message(ALICE, ALICE.id, None, {"text": "dated in year 36812", "date": 2**40})
        fake.message(ALICE, "behind it")
        (note,) = await a.wait_channel(1)
        assert note["params"]["content"] == "behind it"
        assert running.running
    (dead,) = [item for item in list_queue(home) if item.where == "bridge/dead-letter"]
    assert dead.id == f"update:{far['update_id']}" and "cannot be read" in dead.reason


async def test_a_transient_failure_holds_the_lane_and_retries_in_order(
    home: Path, fake: FakeTelegram
) -> None:
    async with a_current_b_replied(home, fake) as (a, b, running, said):
        a.kill()
        await a.wait_exit()
        inbox = SessionPaths(home, "proj-a").inbox
        shutil.rmtree(inbox / "tmp")
        (inbox / "tmp").write_text("not a directory: no file can be written into the inbox")

        asked = fake.message(ALICE, "held for A")["message"]
        fake.message(ALICE, "to B behind it", reply_to=said)
        with anyio.fail_after(60):
            while running.stderr_text().count('"update_retry"') < 2:  # noqa: ASYNC110 - another process logs
                await anyio.sleep(0.05)
        assert b.channel() == []  # the lane holds: B's update waits behind A's

        (inbox / "tmp").unlink()
        (inbox / "tmp").mkdir(mode=0o700)
        (to_b,) = await b.wait_channel(1, timeout=60)
        assert to_b["params"]["content"] == "to B behind it"
        # A's response waits in its inbox (re-drives may write it more than once; the store keeps one).
        assert all("held for A" in p.read_text() for p in (inbox / "new").iterdir())
        async with sessions(home, "proj-a") as (again,):
            (held,) = await again.wait_channel(1)
            assert held["params"]["content"] == "held for A"
            assert held["params"]["meta"]["response_id"] == f"tg:{ALICE.id}:{asked['message_id']}"
    assert len(again.channel()) == 1 and len(b.channel()) == 1
    assert not any(r["event"] == "quarantined" for r in read_audit(home))


def test_scalar_joins_two_halves_and_replaces_a_lone_one() -> None:
    assert scalar(HIGH + LOW) == EMOJI
    assert scalar(f"a{HIGH}b{LOW}{LOW}") == "a\ufffdb\ufffd\ufffd"
    assert scalar("plain ascii <channel>") == "plain ascii <channel>"
