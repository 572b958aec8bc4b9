"""Shared pieces of the bridge's end-to-end tests: the person, the allowlist, reading tool results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mcp_cascade.testing import BridgeProcess, ServeProcess
from mcp_cascade.testing.fake_api import BotMessage, FakeTelegram, FakeUser

ALICE = FakeUser(42, "Alice", "alice")
MALLORY = FakeUser(666, "Mallory", "mallory")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def allow(home: Path, *users: int) -> None:
    """An allowlist in config.toml, so serve offers the permission relay and the bridge accepts them."""
    (home / "config.toml").write_text(f"allow = [{', '.join(str(u) for u in users)}]\n")


def tool_json(result: dict[str, Any]) -> Any:
    """The JSON a tool returned as its text content."""
    assert not result.get("isError"), result
    return json.loads(result["content"][0]["text"])


def message_with(fake: FakeTelegram, chat_id: int, needle: str) -> Callable[[], BotMessage | None]:
    """A predicate for ``fake.wait_for``: the bot's newest message in ``chat_id`` containing ``needle``."""

    def find() -> BotMessage | None:
        found = [m for m in fake.messages(chat_id) if needle in m.text]
        return found[-1] if found else None

    return find


@asynccontextmanager
async def sessions(home: Path, *names: str) -> AsyncIterator[list[ServeProcess]]:
    """Serve processes, started and initialized like Claude Code does."""
    async with AsyncExitStack() as stack:
        started = [await stack.enter_async_context(ServeProcess(home, name)) for name in names]
        for serve in started:
            await serve.wait_session()
            await serve.initialize()
        yield started


@asynccontextmanager
async def bridge(home: Path, fake: FakeTelegram, **kw: Any) -> AsyncIterator[BridgeProcess]:
    """A running bridge subprocess, ready (bridge.json published)."""
    process = BridgeProcess(home, fake.base_url, **kw)
    async with process:
        await process.wait_ready()
        yield process


async def greet(fake: FakeTelegram, user: FakeUser = ALICE) -> None:
    """The person opens the chat (/start), so the bridge knows where to write."""
    fake.message(user, "/start")
    await fake.wait_for(message_with(fake, user.id, "carries your answers"))
