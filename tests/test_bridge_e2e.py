"""The bridge end to end: fake Bot API → ``mcp-cascade bridge`` (subprocess) → ``serve`` (subprocess, stdio).

Nothing of ours is mocked: the person is played through the fake Bot API, Claude
Code through ServeProcess's raw JSON-RPC, and every hop is real HTTP on loopback.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_cascade.testing import BridgeProcess
from mcp_cascade.testing.fake_api import FakeTelegram
from mcp_cascade.wire import PERMISSION
from tests.bridge_helpers import (
    ALICE,
    MALLORY,
    allow,
    bridge,
    greet,
    message_with,
    metric,
    sessions,
    tool_json,
)
from tests.helpers import sign

pytestmark = pytest.mark.anyio
STREAM = 60
KILLS = (5, 25, 45)  # SIGKILL the bridge when the session has seen this many


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram().serving() as running:
        yield running


async def test_a_tap_a_reply_and_plain_text_each_reach_only_their_own_session(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a", "proj-b") as (a, b), bridge(home, fake):
        await greet(fake)
        asked = tool_json(
            await a.call_tool("ask_user", {"question": "Deploy?", "options": ["ship it", "wait"]})
        )
        question = await fake.wait_for(message_with(fake, ALICE.id, "Deploy?"))
        assert question.message_id == asked["message_id"] and "proj-a" in question.text
        said = tool_json(await b.call_tool("reply", {"chat_id": ALICE.id, "text": "B is done"}))

        tap = fake.press(ALICE, question, "ship it")
        fake.message(ALICE, "thanks B", reply_to=said["message_id"])
        fake.message(ALICE, "and one more thing")  # plain text: B wrote last

        (a_note,) = await a.wait_channel(1)
        b_notes = await b.wait_channel(2)
        assert len(a.channel()) == 1 and len(b.channel()) == 2
        assert a_note["params"]["content"] == "ship it"
        a_meta = a_note["params"]["meta"]
        assert a_meta["type"] == "callback" and a_meta["request_id"] == asked["request_id"]
        assert a_meta["response_id"] == f"tg:cb:{tap['callback_query']['id']}" and a_meta["tier"] == "1"
        assert [n["params"]["content"] for n in b_notes] == ["thanks B", "and one more thing"]
        assert all(
            n["params"]["meta"]["type"] == "message" and n["params"]["meta"]["user"] == "@alice"
            for n in b_notes
        )

        await fake.wait_for(lambda: question.edits == 1)
        assert question.buttons() == [] and "→ ship it" in question.text
        answer = await fake.wait_for(lambda: fake.callback_answer(tap["callback_query"]["id"]))
        assert "sent to proj-a" in answer["text"]
    assert a.bad_lines == [] and b.bad_lines == []


async def test_ask_user_round_trip_through_wait_for_response(home: Path, fake: FakeTelegram) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake):
        await greet(fake)
        asked = tool_json(await a.call_tool("ask_user", {"question": "Which?", "options": ["left", "right"]}))
        waited: dict[str, Any] = {}

        async def wait() -> None:
            waited.update(
                tool_json(
                    await a.call_tool(
                        "wait_for_response", {"request_id": asked["request_id"], "timeout_s": 30}
                    )
                )
            )

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                question = await fake.wait_for(message_with(fake, ALICE.id, "Which?"))
                fake.press(ALICE, question, "right")
        assert waited["status"] == "answered"
        response = waited["response"]
        assert response["request_id"] == asked["request_id"]
        assert response["type"] == "callback" and response["callback_data"] == "right"
        assert response["session"] == "proj-a" and response["user"]["id"] == ALICE.id


async def test_permission_relay_round_trip_ends_in_the_exact_permission_frame(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake):
        init = next(f for f in a.frames if f.get("id") == 1)
        assert init["result"]["capabilities"]["experimental"]["claude/channel/permission"] == {}
        await greet(fake)
        await a.send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/claude/channel/permission_request",
                "params": {
                    "request_id": "abcde",
                    "tool_name": "Bash",
                    "description": "Run the test suite",
                    "input_preview": '{"command": "pytest -q"}',
                },
            }
        )
        prompt = await fake.wait_for(message_with(fake, ALICE.id, "wants to use Bash"))
        assert "pytest -q" in prompt.text
        fake.press(ALICE, prompt, "✅ Allow")
        (frame,) = await a.wait_channel(1, method=PERMISSION)
        assert frame == {
            "jsonrpc": "2.0",
            "method": PERMISSION,
            "params": {"request_id": "abcde", "behavior": "allow"},
            "_received": frame["_received"],
        }
        await fake.wait_for(lambda: prompt.edits == 1)
        assert prompt.buttons() == [] and "✅ Allowed" in prompt.text
        assert a.channel() == []
    assert a.bad_lines == []


async def test_strangers_and_forged_api_calls_never_reach_a_session(home: Path, fake: FakeTelegram) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake) as running:
        await greet(fake)
        await a.send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/claude/channel/permission_request",
                "params": {
                    "request_id": "fghij",
                    "tool_name": "Write",
                    "description": "",
                    "input_preview": "",
                },
            }
        )
        prompt = await fake.wait_for(message_with(fake, ALICE.id, "wants to use Write"))
        sent_before = len(fake.messages())
        stranger_tap = fake.press(MALLORY, prompt, "✅ Allow")
        fake.tap(MALLORY, prompt, "p:0123456789:a")
        fake.message(MALLORY, "yes fghij")
        fake.message(MALLORY, "let me in")
        fake.message(ALICE, "no fghij")  # processed after the stranger's four, in update order

        (frame,) = await a.wait_channel(1, method=PERMISSION)
        assert frame["params"] == {"request_id": "fghij", "behavior": "deny"}
        assert a.channel() == []
        assert fake.callback_answer(stranger_tap["callback_query"]["id"]) is None
        assert fake.messages(MALLORY.id) == []

        info = running.info()
        assert info is not None
        raw = json.dumps({"session": "proj-a", "chat_id": ALICE.id, "text": "forged"}).encode()
        forged = sign("whsec_" + "B" * 43 + "=", "out:forged", raw)
        async with httpx.AsyncClient() as http:
            refused = await http.post(info["api_url"] + "/api/reply", content=raw, headers=forged)
            metrics = (await http.get(info["api_url"] + "/metrics")).text
        assert refused.status_code == 401
        await fake.wait_for(lambda: prompt.edits == 1)
        assert len(fake.messages()) == sent_before
        assert metric(metrics, "mcp_cascade_responses_total", outcome="rejected", tier="2") == 4


async def test_the_bridge_killed_mid_stream_delivers_every_update_once(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    texts = [f"update {n:03d}" for n in range(STREAM)]
    async with sessions(home, "proj-a") as (a,), bridge(home, fake) as running:

        async def person() -> None:
            for text in texts:
                fake.message(ALICE, text)
                await anyio.sleep(0.005)  # a steady stream, spread over many polls

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(person)
                for kill_at in KILLS:
                    await a.wait_channel(kill_at, timeout=60)
                    running.kill()
                    assert await running.wait_exit() == -9
                    await running.start()
                    await running.wait_ready()
            await a.wait_channel(STREAM, timeout=60)
            await fake.wait_for(lambda: fake.pending_updates == 0)
    assert [n["params"]["content"] for n in a.channel()] == texts
    assert len({n["params"]["meta"]["response_id"] for n in a.channel()}) == STREAM
    assert not any(n["params"]["meta"].get("redelivered") for n in a.channel())


async def test_telegram_429_and_5xx_are_waited_out_and_nothing_is_lost(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake):
        fake.fail("getUpdates", 429, retry_after=2)
        fake.fail("getUpdates", 502, times=2)
        fake.fail("answerCallbackQuery", 500)
        fake.fail("editMessageText", 429, retry_after=1)
        fake.message(ALICE, "through the storm 0")  # ends the poll in flight; the next ones meet the faults
        await fake.wait_for(lambda: any(c.status == 429 for c in fake.calls_of("getUpdates")))
        for n in range(1, 5):
            fake.message(ALICE, f"through the storm {n}")
        notes = await a.wait_channel(5, timeout=30)
        assert [n["params"]["content"] for n in notes] == [f"through the storm {n}" for n in range(5)]
        polls = fake.calls_of("getUpdates")
        flooded = next(i for i, c in enumerate(polls) if c.status == 429)
        assert [c.status for c in polls[flooded : flooded + 4]] == [429, 502, 502, 200]
        assert polls[flooded + 1].at - polls[flooded].at >= 1.9  # retry_after=2, honoured

        asked = tool_json(await a.call_tool("ask_user", {"question": "Go?", "options": ["go"]}))
        question = await fake.wait_for(message_with(fake, ALICE.id, "Go?"))
        tap = fake.press(ALICE, question, "go")
        notes = await a.wait_channel(6, timeout=30)
        assert notes[-1]["params"]["meta"]["request_id"] == asked["request_id"]
        await fake.wait_for(lambda: fake.callback_answer(tap["callback_query"]["id"]))
        await fake.wait_for(lambda: question.edits == 1)
        edits = fake.calls_of("editMessageText")
        assert [c.status for c in edits] == [429, 200] and edits[1].at - edits[0].at >= 0.9


async def test_with_the_session_down_the_person_is_told_and_it_gets_the_answer_on_return(
    home: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    async with sessions(home, "proj-a") as (a,), bridge(home, fake):
        await greet(fake)
        said = tool_json(await a.call_tool("reply", {"chat_id": ALICE.id, "text": "going offline"}))
        await a.stop()
        assert not (home / "sessions" / "proj-a" / "session.json").exists()
        fake.message(ALICE, "here is your answer", reply_to=said["message_id"])
        ack = await fake.wait_for(message_with(fake, ALICE.id, "Queued for proj-a"))
        assert ack.reply_to is not None
        await a.start()
        await a.wait_session()
        await a.initialize()
        (note,) = await a.wait_channel(1, timeout=30)
        assert note["params"]["content"] == "here is your answer"
        assert note["params"]["meta"]["response_id"].startswith("tg:42:")


async def test_a_second_bridge_for_the_same_token_refuses_to_start(
    home: Path, tmp_path: Path, fake: FakeTelegram
) -> None:
    async with bridge(home, fake, allow=[ALICE.id]) as first:
        again = BridgeProcess(home, fake.base_url, token=first.token, name="again")
        other_home = tmp_path / "other-home"
        other_home.mkdir(mode=0o700)
        elsewhere = BridgeProcess(other_home, fake.base_url, token=first.token, name="elsewhere")
        for second in (again, elsewhere):
            async with second:
                assert await second.wait_exit() == 2
            err = second.stderr_text()
            assert "already running" in err and f"pid {first.process.pid if first.process else 0}" in err
            assert first.token not in err and first.token.partition(":")[2] not in err
        assert first.info() is not None


async def test_pairing_lets_the_first_person_in_from_the_machine(home: Path, fake: FakeTelegram) -> None:
    async with sessions(home, "proj-a") as (a,), bridge(home, fake):
        fake.message(ALICE, "hello?")
        offer = await fake.wait_for(message_with(fake, ALICE.id, "mcp-cascade bridge pair "))
        code = offer.text.split("mcp-cascade bridge pair ")[1].split()[0]
        done = await anyio.run_process(
            [sys.executable, "-m", "mcp_cascade", "bridge", "pair", code, "--home", str(home)], check=False
        )
        assert done.returncode == 0, done.stderr
        await fake.wait_for(message_with(fake, ALICE.id, "Paired"))
        fake.message(ALICE, "now it counts")
        (note,) = await a.wait_channel(1)
        assert note["params"]["content"] == "now it counts"
        assert a.channel()[0]["params"]["content"] == "now it counts"  # "hello?" never reached it


async def test_bridge_json_health_and_a_clean_stop(home: Path, fake: FakeTelegram) -> None:
    async with sessions(home, "proj-a") as (a,), bridge(home, fake, allow=[ALICE.id]) as running:
        info = running.info()
        assert info is not None and set(info) == {"protocol", "pid", "api_url", "health_url"}
        assert info["protocol"] == 1 and info["api_url"].startswith("http://127.0.0.1:")
        fake.message(ALICE, "ping")
        await a.wait_channel(1)
        async with httpx.AsyncClient() as http:
            health = (await http.get(info["health_url"])).json()
            tier = (await http.get(info["api_url"] + "/health/bridge")).json()
            missing = await http.get(info["api_url"] + "/health/nope")
        assert health["status"] == "ok" and health["bot"] == "@cascade_fake_bot"
        assert tier["telegram"]["reachable"] is True and tier["telegram"]["last_poll_age_s"] < 60
        assert "proj-a" in tier["breakers"] and tier["breakers"]["proj-a"]["state"] == "closed"
        assert tier["outbox_depth"] == 0
        assert missing.status_code == 404
        started = time.monotonic()
        running.kill(signal.SIGTERM)
        assert await running.wait_exit() == 0
        assert time.monotonic() - started < 10
        assert not (home / "bridge" / "bridge.json").exists()


async def test_the_token_never_appears_in_output_files_or_endpoints(home: Path, tmp_path: Path) -> None:
    async with FakeTelegram(token="1:the-right-one").serving() as strict:
        rejected = BridgeProcess(home, strict.base_url, token="7:" + "s3cr3t" * 6, name="rejected")
        async with rejected:
            assert await rejected.wait_exit() == 2
        assert "rejected the bot token" in rejected.stderr_text()
    async with FakeTelegram().serving() as fake:
        token = "8:" + "t0k3n" * 8
        async with bridge(home, fake, token=token, allow=[ALICE.id]) as running:
            info = running.info()
            assert info is not None
            async with httpx.AsyncClient() as http:
                seen = [
                    (await http.get(info["api_url"] + p)).text
                    for p in ("/health", "/health/bridge", "/metrics")
                ]
        unreachable = BridgeProcess(home, "http://127.0.0.1:9/bot", token=token, name="unreachable")
        async with unreachable:  # it retries getMe until SIGTERM, logging each failure
            await unreachable.wait_log("telegram_retry")
    texts = seen + _every_file(tmp_path)
    for secret in ("s3cr3t" * 6, "t0k3n" * 8):
        assert not [t for t in texts if secret in t]


def _every_file(root: Path) -> list[str]:
    return [p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()]
