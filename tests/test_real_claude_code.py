"""serve under the real Claude Code CLI (pinned), offline, against a fake Messages API.

Each test runs the client in its TUI under tmux, inside a loopback-only network
namespace that also holds the fake API, and ``serve`` configured through the
project's ``.mcp.json`` exactly as the README tells users. A channel push is
proven by what the client sends to the model next; a tool by the tool_result
the client sends back. Nothing sets the client's protocol negotiation: the
channel must work with its defaults.

Run alone: ``pytest -m claude -s -n 0`` (the first run installs the client into
``.cache/claude-code/``). Skipped, with the reason, where tmux, npm or the
registry, or network namespaces are missing.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.claude.client import (
    REGISTERED,
    SERVER,
    SKIPPED,
    ClaudeCode,
    install,
    serve_command,
    version_of,
)
from tests.claude.fake_api import FakeMessagesAPI, Logged, ToolUse
from tests.claude.netns import Unavailable, run_isolated
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.claude

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "claude-code"
TOOL = f"mcp__{SERVER}__"
CHANNEL_RE = re.compile(rf'<channel source="{SERVER}"(?P<attrs>[^>]*)>\n?(?P<content>.*?)\n?</channel>', re.S)
ATTR_RE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class ChannelBlock:
    """One ``<channel>`` block as the model reads it."""

    attrs: dict[str, str]
    content: str


def channel_blocks(text: str) -> list[ChannelBlock]:
    """Every mcp-cascade channel block in ``text``."""
    return [
        ChannelBlock(dict(ATTR_RE.findall(m.group("attrs"))), m.group("content"))
        for m in CHANNEL_RE.finditer(text)
    ]


@pytest.fixture(scope="session")
def claude_binary() -> Path:
    """The pinned client, installed into the repository's cache on first use."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux); the client's TUI runs under it")
    try:
        return install(CACHE)
    except Unavailable as exc:
        pytest.skip(str(exc))


def isolated(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` in a fresh loopback-only network namespace, or skip saying why it cannot be made."""
    try:
        return run_isolated(main)
    except Unavailable as exc:
        pytest.skip(str(exc))


@contextlib.asynccontextmanager
async def claude_with_serve(
    binary: Path, root: Path, *, serve: Sequence[str] | None = None, tools: Sequence[str] = ()
) -> AsyncIterator[tuple[FakeMessagesAPI, ClaudeCode, Path]]:
    """The fake API, and the client with serve, past the channels warning and the MCP connection."""
    api = FakeMessagesAPI()
    cascade_home = root / "cascade"
    async with (
        api.serving() as url,
        ClaudeCode(
            binary,
            root,
            url,
            serve_command=serve or serve_command(sys.executable, cascade_home),
            allowed_tools=[TOOL + t for t in tools],
            # serve imports this checkout's package, whatever the interpreter has installed.
            pythonpath=str(REPO),
        ) as claude,
    ):
        assert "MCP_PROTOCOL_NEGOTIATION" not in claude.environment()
        await claude.accept_channels_warning()
        await claude.wait_debug(REGISTERED, SKIPPED)
        yield api, claude, cascade_home


def session_json(cascade_home: Path) -> dict[str, Any]:
    """The one session serve published under ``cascade_home``."""
    (path,) = (cascade_home / "sessions").glob("*/session.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def post_webhook(http: httpx.AsyncClient, cascade_home: Path, data: dict[str, Any]) -> httpx.Response:
    """A signed tier-1 POST to the session's sidecar, as a bridge sends it."""
    secret = (cascade_home / "secret").read_text().strip()
    raw = encode(data)
    return await http.post(
        session_json(cascade_home)["webhook_url"], content=raw, headers=sign(secret, data["id"], raw)
    )


def in_session(request: Logged) -> bool:
    """Whether ``request`` is a turn of the session (it offers serve's tools), not a side request."""
    return any(name.startswith(TOOL) for name in request.tool_names())


def carries(response_id: str) -> Callable[[Logged], bool]:
    """Whether a session turn's newest user message holds the channel block of ``response_id``."""
    return lambda r: (
        in_session(r)
        and any(b.attrs.get("response_id") == response_id for b in channel_blocks(r.last_turn_text()))
    )


def prompted(text: str) -> Callable[[Logged], bool]:
    """Whether a session turn's newest user message holds ``text``."""
    return lambda r: in_session(r) and text in r.last_turn_text()


def test_a_webhook_answer_reaches_the_model_once_with_the_clients_default_negotiation(
    claude_binary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> tuple[float, float]:
        async with (
            claude_with_serve(claude_binary, tmp_path) as (api, claude, cascade_home),
            httpx.AsyncClient(timeout=10) as http,
        ):
            assert claude.debug_lines(REGISTERED), claude.debug_lines(SKIPPED)
            # serve's stderr, relayed into the client's log: the client probed the newer revision first.
            (fallback,) = claude.debug_lines("handshake_fallback")
            assert "server/discover" in fallback

            data = body(id="tg:4242:901", text="ship it from the phone", message_id=901)
            posted = time.perf_counter()
            answer = await post_webhook(http, cascade_home, data)
            answered_ms = (time.perf_counter() - posted) * 1000
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "delivered"

            carrying = await api.wait_for(carries("tg:4242:901"), timeout=30)
            latency_ms = (carrying.at - posted) * 1000
            (block,) = [b for b in channel_blocks(carrying.text()) if b.attrs["response_id"] == "tg:4242:901"]
            assert block.content == "ship it from the phone"
            assert block.attrs == {
                "response_id": "tg:4242:901",
                "correlation_id": answer.json()["correlation_id"],
                "type": "message",
                "chat_id": "4242",
                "user": "@alice",
                "tier": "1",
            }

            await claude.wait_screen(f"← {SERVER} · @alice: ship it from the phone")

            # Once: one notification; the next turn's history holds the block once, brought by one request.
            await claude.type("FOLLOW-UP-1")
            later = await api.wait_for(prompted("FOLLOW-UP-1"), timeout=30)
            assert (
                len([b for b in channel_blocks(later.text()) if b.attrs["response_id"] == "tg:4242:901"]) == 1
            )
            assert [r for r in api.messages() if carries("tg:4242:901")(r)] == [carrying]
            assert len(claude.debug_lines(f'"{SERVER}": notifications/claude/channel ')) == 1
            return answered_ms, latency_ms

    answered_ms, latency_ms = isolated(scenario)
    with capsys.disabled():
        print(
            f"\nClaude Code {version_of(claude_binary)}: webhook POST → 200 delivered {answered_ms:.1f} ms, "
            f"→ the request carrying the channel block {latency_ms:.1f} ms"
        )


def tool_result(request: Logged, tool_use_id: str) -> dict[str, Any]:
    """A tool's JSON result as the client returned it to the model."""
    results = request.tool_results()
    assert tool_use_id in results, f"no tool_result for {tool_use_id}: {results}"
    data: dict[str, Any] = json.loads(results[tool_use_id])
    return data


def test_the_model_calls_the_tools_through_the_real_client_and_reads_their_results(
    claude_binary: Path, tmp_path: Path
) -> None:
    tools = ("cascade_status", "get_responses", "wait_for_response")

    async def scenario() -> None:
        async with (
            claude_with_serve(claude_binary, tmp_path, tools=tools) as (api, claude, cascade_home),
            httpx.AsyncClient(timeout=10) as http,
        ):
            session = session_json(cascade_home)["session_id"]
            api.script("CALL-STATUS", ToolUse(TOOL + "cascade_status", {}, "toolu_status"))
            api.script("CALL-GET", ToolUse(TOOL + "get_responses", {"limit": 10}, "toolu_get"))
            api.script(
                "CALL-WAIT",
                ToolUse(TOOL + "wait_for_response", {"request_id": "rq-77", "timeout_s": 30}, "toolu_wait"),
            )

            await claude.type("CALL-STATUS")
            status = tool_result(
                await api.wait_for(lambda r: "toolu_status" in r.tool_results(), 30), "toolu_status"
            )
            assert status["session_id"] == session
            assert status["tiers"]["webhook"]["client_attached"] is True
            assert status["tiers"]["webhook"]["url"] == session_json(cascade_home)["webhook_url"]

            first = body(id="tg:4242:1001", text="answer for get_responses")
            assert (await post_webhook(http, cascade_home, first)).json()["status"] == "delivered"
            await api.wait_for(carries("tg:4242:1001"), timeout=30)
            await claude.type("CALL-GET")
            listed = tool_result(
                await api.wait_for(lambda r: "toolu_get" in r.tool_results(), 30), "toolu_get"
            )
            assert [(r["id"], r["text"], r["tier"]) for r in listed["responses"]] == [
                ("tg:4242:1001", "answer for get_responses", 1)
            ]

            await claude.type("CALL-WAIT")
            await claude.wait_debug('"mcp-cascade": Calling MCP tool: wait_for_response')
            button = body("callback", id="tg:cb:77", request_id="rq-77", callback_data="opt:yes")
            assert (await post_webhook(http, cascade_home, button)).status_code == 200
            waited = tool_result(
                await api.wait_for(lambda r: "toolu_wait" in r.tool_results(), 30), "toolu_wait"
            )
            assert waited["status"] == "answered"
            assert waited["response"]["id"] == "tg:cb:77"
            assert waited["response"]["callback_data"] == "opt:yes"
            assert waited["response"]["request_id"] == "rq-77"

    isolated(scenario)


def test_a_server_that_answers_the_clients_probe_gets_no_channel_in_this_client_version(
    claude_binary: Path, tmp_path: Path
) -> None:
    """Why serve refuses ``server/discover``: without that, the pinned client skips the channel."""

    async def scenario() -> None:
        command = [
            sys.executable,
            "-m",
            "tests.claude.modern_serve",
            "serve",
            "--home",
            str(tmp_path / "cascade"),
        ]
        async with claude_with_serve(claude_binary, tmp_path, serve=command) as (_, claude, _):
            assert not claude.debug_lines(REGISTERED)
            (skipped,) = claude.debug_lines(SKIPPED)
            assert "did not declare claude/channel capability" in skipped

    isolated(scenario)
