"""Tools for clients without channels: get_responses, wait_for_response, ask_user, cascade_status.

The tools are called in-process, over MCP memory streams, on the channel server
of a real engine and store fed by the real sidecar app; cascade_status, which
composes a whole serve, is asked of a real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from mcp_cascade.testing import ServeProcess
from tests.helpers import body
from tests.inproc import Sidecar, mcp_client, sidecar

pytestmark = pytest.mark.anyio


def _payload(result: types.CallToolResult) -> Any:
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return json.loads(content.text)


async def _post(app: Sidecar, data: dict[str, Any]) -> None:
    answer = await app.post_signed(data)
    assert answer.status_code in (200, 202), answer.text


async def test_get_responses_lists_unacknowledged_answers_until_they_are_acknowledged(home: Path) -> None:
    async with sidecar(home, "tools-a") as app, mcp_client(app) as (client, _):
        for n in range(3):
            await _post(app, body(id=f"g:{n}", text=f"answer {n}"))
        listed = _payload(await client.call_tool("get_responses"))
        assert [r["text"] for r in listed["responses"]] == ["answer 0", "answer 1", "answer 2"]
        assert all(r["tier"] == 1 for r in listed["responses"])
        after = _payload(await client.call_tool("get_responses", {"ack": ["g:0", "g:1", "nope"]}))
        assert after["acknowledged"] == 2
        assert [r["id"] for r in after["responses"]] == ["g:2"]


async def test_wait_for_response_returns_the_matching_answer_and_reports_progress(home: Path) -> None:
    async with sidecar(home, "tools-b") as app, mcp_client(app) as (client, _):
        await _post(app, body(id="w:other", text="unrelated"))
        results: list[types.CallToolResult] = []
        reports: list[tuple[float, float | None, str | None]] = []
        reported = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            reports.append((progress, total, message))
            reported.set()

        async def waiter() -> None:
            arguments = {"request_id": "req7", "timeout_s": 20}
            results.append(
                await client.call_tool("wait_for_response", arguments, progress_callback=on_progress)
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            with anyio.fail_after(10):
                await reported.wait()
            await _post(app, body("callback", id="w:mine", request_id="req7"))
        answer = _payload(results[0])
        assert answer["status"] == "answered"
        assert answer["response"]["id"] == "w:mine"
        assert answer["response"]["callback_data"] == "opt:1"
        assert reports[0][1] == 20 and reports[0][2] == "waiting for the user's answer"
        again = _payload(await client.call_tool("wait_for_response", {"request_id": "req7", "timeout_s": 0}))
        assert again["status"] == "timeout"


async def test_wait_for_response_without_request_id_takes_the_oldest_unacknowledged(home: Path) -> None:
    async with sidecar(home, "tools-c", attached=False) as app:
        await _post(app, body(id="o:1", text="first"))
        async with mcp_client(app) as (client, frames):
            got = _payload(await client.call_tool("wait_for_response", {"timeout_s": 5}))
            assert got["response"]["text"] == "first"
            assert app.engine.attached  # notifications/initialized attached the channel
            assert any('"response_id":"o:1"' in line for line in frames.lines)


async def test_ask_user_without_a_bridge_is_a_tool_error_not_a_crash(home: Path) -> None:
    async with sidecar(home, "tools-e") as app, mcp_client(app) as (client, _):
        result = await client.call_tool("ask_user", {"question": "Deploy?", "options": ["yes", "no"]})
        assert result.is_error is True
        assert "no bridge is running" in _payload(result)["error"]
        listed = _payload(await client.call_tool("get_responses"))
        assert listed["responses"] == []


async def test_cascade_status_reports_tiers_and_queue(home: Path) -> None:
    async with ServeProcess(home, "tools-d") as serve:
        await serve.wait_session()
        await serve.initialize()
        status = json.loads((await serve.call_tool("cascade_status"))["content"][0]["text"])
        assert status["session_id"] == "tools-d"
        assert set(status["tiers"]) >= {"webhook", "file"}
        assert status["queue_depth"] == 0
