"""serve as Claude Code sees it: a subprocess speaking JSON-RPC over stdio, fed by signed webhooks."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio


async def test_a_signed_webhook_becomes_exactly_one_channel_notification_frame(home: Path) -> None:
    async with ServeProcess(home, "wire-a") as serve:
        info = await serve.wait_session()
        init = await serve.initialize()
        caps = init["result"]["capabilities"]
        assert caps["experimental"]["claude/channel"] == {}
        assert "tools" in caps
        assert "mcp-cascade" in init["result"]["instructions"]
        secret = (home / "secret").read_text().strip()
        data = body(id="tg:4242:7", text="ship it")
        raw = encode(data)
        async with httpx.AsyncClient() as client:
            answer = await client.post(info.webhook_url, content=raw, headers=sign(secret, "tg:4242:7", raw))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "delivered"
        assert answer.json()["tier"] == 1
        (note,) = await serve.wait_channel(1)
        meta = note["params"]["meta"]
        assert note["method"] == "notifications/claude/channel"
        assert note["params"]["content"] == "ship it"
        assert meta["response_id"] == "tg:4242:7"
        assert meta["correlation_id"] == answer.json()["correlation_id"]
        assert meta["type"] == "message"
        assert meta["chat_id"] == "4242"
        assert meta["user"] == "@alice"
        assert meta["tier"] == "1"
        assert all(k.replace("_", "").isalnum() for k in meta)
    assert serve.bad_lines == []


async def test_a_response_posted_before_initialized_is_queued_then_pushed_in_order(home: Path) -> None:
    async with ServeProcess(home, "wire-b") as serve:
        info = await serve.wait_session()
        secret = (home / "secret").read_text().strip()
        async with httpx.AsyncClient() as client:
            for n in range(3):
                raw = encode(body(id=f"q:{n}", text=f"answer {n}"))
                answer = await client.post(info.webhook_url, content=raw, headers=sign(secret, f"q:{n}", raw))
                assert answer.status_code == 202
                assert answer.json()["status"] == "queued"
        assert serve.channel() == []
        await serve.initialize()
        notes = await serve.wait_channel(3)
        assert [n["params"]["content"] for n in notes] == ["answer 0", "answer 1", "answer 2"]


async def test_stdin_eof_stops_cleanly_and_removes_session_json(home: Path) -> None:
    async with ServeProcess(home, "wire-c") as serve:
        await serve.wait_session()
        await serve.initialize()
        await serve.close_stdin()
        assert await serve.wait_exit() == 0
        assert not (home / "sessions" / "wire-c" / "session.json").exists()
        assert serve.bad_lines == []


async def test_sigterm_stops_cleanly_with_exit_code_zero(home: Path) -> None:
    async with ServeProcess(home, "wire-d") as serve:
        await serve.wait_session()
        await serve.initialize()
        serve.kill(signal.SIGTERM)
        assert await serve.wait_exit() == 0
        assert not (home / "sessions" / "wire-d" / "session.json").exists()
        assert serve.bad_lines == []
