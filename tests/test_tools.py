"""Tools for clients without channels: get_responses, wait_for_response, cascade_status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio


def _payload(result: dict[str, Any]) -> Any:
    return json.loads(result["content"][0]["text"])


async def _post(serve: ServeProcess, home: Path, data: dict[str, Any]) -> None:
    info = await serve.wait_session()
    raw = encode(data)
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            info.webhook_url,
            content=raw,
            headers=sign((home / "secret").read_text().strip(), data["id"], raw),
        )
    assert answer.status_code in (200, 202), answer.text


async def test_get_responses_lists_unacknowledged_answers_until_they_are_acknowledged(home: Path) -> None:
    async with ServeProcess(home, "tools-a") as serve:
        await serve.wait_session()
        await serve.initialize()
        for n in range(3):
            await _post(serve, home, body(id=f"g:{n}", text=f"answer {n}"))
        listed = _payload(await serve.call_tool("get_responses"))
        assert [r["text"] for r in listed["responses"]] == ["answer 0", "answer 1", "answer 2"]
        assert all(r["tier"] == 1 for r in listed["responses"])
        after = _payload(await serve.call_tool("get_responses", {"ack": ["g:0", "g:1", "nope"]}))
        assert after["acknowledged"] == 2
        assert [r["id"] for r in after["responses"]] == ["g:2"]


async def test_wait_for_response_returns_the_matching_answer_and_reports_progress(home: Path) -> None:
    async with ServeProcess(home, "tools-b") as serve:
        await serve.wait_session()
        await serve.initialize()
        await _post(serve, home, body(id="w:other", text="unrelated"))
        result: dict[str, Any] = {}

        async def waiter() -> None:
            frame = await serve.request(
                "tools/call",
                {
                    "name": "wait_for_response",
                    "arguments": {"request_id": "req7", "timeout_s": 20},
                    "_meta": {"progressToken": "tok-1"},
                },
            )
            result.update(frame)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await serve.wait_for(
                lambda: any(n["method"] == "notifications/progress" for n in serve.notifications), timeout=10
            )
            await _post(serve, home, body("callback", id="w:mine", request_id="req7"))
        answer = _payload(result["result"])
        assert answer["status"] == "answered"
        assert answer["response"]["id"] == "w:mine"
        assert answer["response"]["callback_data"] == "opt:1"
        progress = [n for n in serve.notifications if n["method"] == "notifications/progress"]
        assert progress[0]["params"]["progressToken"] == "tok-1"
        again = _payload(await serve.call_tool("wait_for_response", {"request_id": "req7", "timeout_s": 0}))
        assert again["status"] == "timeout"


async def test_wait_for_response_without_request_id_takes_the_oldest_unacknowledged(home: Path) -> None:
    async with ServeProcess(home, "tools-c") as serve:
        await serve.wait_session()
        await _post(serve, home, body(id="o:1", text="first"))
        await serve.initialize()
        got = _payload(await serve.call_tool("wait_for_response", {"timeout_s": 5}))
        assert got["response"]["text"] == "first"


async def test_cascade_status_reports_tiers_and_queue(home: Path) -> None:
    async with ServeProcess(home, "tools-d") as serve:
        await serve.wait_session()
        await serve.initialize()
        status = _payload(await serve.call_tool("cascade_status"))
        assert status["session_id"] == "tools-d"
        assert set(status["tiers"]) >= {"webhook", "file"}
        assert status["queue_depth"] == 0


async def test_ask_user_without_a_bridge_is_a_tool_error_not_a_crash(home: Path) -> None:
    async with ServeProcess(home, "tools-e") as serve:
        await serve.wait_session()
        await serve.initialize()
        result = await serve.call_tool("ask_user", {"question": "Deploy?", "options": ["yes", "no"]})
        assert result["isError"] is True
        assert "no bridge is running" in _payload(result)["error"]
        status = _payload(await serve.call_tool("cascade_status"))
        assert status["session_id"] == "tools-e"
