"""The ok / degraded / down rule (pure), and the health serve reports over HTTP."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_cascade.ops.health import (
    BridgeFacts,
    FileFacts,
    LastError,
    Problem,
    WebhookFacts,
    bridge_problems,
    file_problems,
    overall_status,
    tier_status,
    webhook_problems,
)
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

NOW = 1_000_000.0


def webhook(**kw: Any) -> WebhookFacts:
    healthy = WebhookFacts(
        listening=True, store_writable=True, client_attached=True, queue_depth=0, last_error=None
    )
    return replace(healthy, **kw)


def files(**kw: Any) -> FileFacts:
    healthy = FileFacts(
        inbox_writable=True,
        watcher_alive=True,
        watch_armed=True,
        rescan_age_s=0.5,
        rescan_interval_s=1.0,
        stalled=0,
        failing={},
    )
    return replace(healthy, **kw)


def test_a_tier_is_down_with_any_fatal_problem_degraded_with_any_other_and_ok_with_none() -> None:
    assert tier_status([]) == "ok"
    assert tier_status([Problem("slow")]) == "degraded"
    assert tier_status([Problem("slow"), Problem("gone", fatal=True)]) == "down"


@pytest.mark.parametrize(
    ("tiers", "age", "expected"),
    [
        ({"webhook": "ok", "file": "ok"}, 0.0, "ok"),
        ({"webhook": "ok", "file": "ok"}, 10.5, "degraded"),  # a response is overdue
        ({"webhook": "ok", "file": "degraded"}, 0.0, "degraded"),
        ({"webhook": "down", "file": "ok"}, 0.0, "degraded"),  # one path still carries responses
        ({"webhook": "down", "file": "down"}, 0.0, "down"),
        ({}, 0.0, "down"),
    ],
)
def test_the_process_is_down_only_when_every_tier_is(
    tiers: dict[str, str], age: float, expected: str
) -> None:
    assert overall_status(tiers, oldest_pending_age_s=age, overall_timeout_s=10.0) == expected  # type: ignore[arg-type]


def test_webhook_facts_become_problems_an_operator_can_act_on() -> None:
    assert webhook_problems(webhook(), NOW) == []
    (unwritable,) = webhook_problems(webhook(store_writable=False), NOW)
    assert unwritable.fatal and "503" in unwritable.text
    (waiting,) = webhook_problems(webhook(client_attached=False, queue_depth=3), NOW)
    assert not waiting.fatal and waiting.text.startswith("3 responses wait")
    assert webhook_problems(webhook(client_attached=False, queue_depth=0), NOW) == []
    (recent,) = webhook_problems(webhook(last_error=LastError(NOW - 5, "push_failed: EPIPE")), NOW)
    assert "5s ago: push_failed: EPIPE" in recent.text
    assert webhook_problems(webhook(last_error=LastError(NOW - 61, "old")), NOW) == []
    assert tier_status(webhook_problems(webhook(listening=False), NOW)) == "down"


def test_file_facts_become_problems_an_operator_can_act_on() -> None:
    assert file_problems(files()) == []
    assert tier_status(file_problems(files(inbox_writable=False))) == "down"
    assert tier_status(file_problems(files(watcher_alive=False))) == "down"
    (unwatched,) = file_problems(files(watch_armed=False))
    assert not unwatched.fatal and "rescan (every 1s)" in unwatched.text
    # The watcher's own account of why replaces the generic sentence.
    (why,) = file_problems(
        files(watch_armed=False, failing={"inbox watch": "cannot watch inbox/new (ENOSPC); rescans only"})
    )
    assert why.text == "cannot watch inbox/new (ENOSPC); rescans only"
    (late,) = file_problems(files(rescan_age_s=4.5))
    assert not late.fatal and late.text == "last rescan 4.5s ago (every 1s expected)"
    assert file_problems(files(rescan_age_s=3.9)) == []
    (first,) = file_problems(files(rescan_age_s=None))
    assert first.text == "no rescan of inbox/new yet"
    (stalled,) = file_problems(files(stalled=2))
    assert stalled.text == "2 claimed files wait for the store to take them"


@pytest.mark.anyio
async def test_serve_reports_each_tier_with_the_detail_behind_its_status(home: Path) -> None:
    async with ServeProcess(home, "health-a") as serve, httpx.AsyncClient() as client:
        info = await serve.wait_session()
        secret = (home / "secret").read_text().strip()
        raw = encode(body(id="h:1"))
        with anyio.fail_after(20):
            assert (
                await client.post(info.webhook_url, content=raw, headers=sign(secret, "h:1", raw))
            ).status_code == 202
            health = (await client.get(info.health_url)).json()
            webhook_only = (await client.get(info.health_url + "/webhook")).json()
            missing = await client.get(info.health_url + "/bridge")
        assert health["session_id"] == "health-a"
        assert set(health) >= {"status", "tiers", "queue_depth", "oldest_pending_age_s", "uptime_s"}
        hook = health["tiers"]["webhook"]
        assert hook["status"] == "degraded"
        assert hook["problems"] == ["1 response waits: no MCP client has initialized this session"]
        assert hook["client_attached"] is False and hook["store_writable"] is True
        assert hook["last_error"] is None
        assert health["tiers"]["file"]["inbox_writable"] is True
        assert health["tiers"]["file"]["watcher_alive"] is True
        assert health["status"] == "degraded"
        assert health["oldest_pending_age_s"] > 0
        assert webhook_only["client_attached"] is False
        assert missing.status_code == 404

        await serve.initialize()
        await serve.wait_channel(1)
        raw = encode(body(id="h:2"))
        with anyio.fail_after(20):
            # A 200 "delivered" comes after the push is recorded, the queued one's included.
            answer = await client.post(info.webhook_url, content=raw, headers=sign(secret, "h:2", raw))
            assert answer.json()["status"] == "delivered"
            hook = (await client.get(info.health_url + "/webhook")).json()
            overall = (await client.get(info.health_url)).json()
        assert hook["status"] == "ok", hook
        assert overall["status"] == "ok", overall
        assert overall["tiers"]["file"]["problems"] == []
        assert hook["client_attached"] is True
        assert hook["latency_ms"]["1"]["n"] == 2


def bridge(**kw: Any) -> BridgeFacts:
    healthy = BridgeFacts(
        telegram_ok_age_s=1.0,
        telegram_failures=0,
        telegram_error=None,
        stale_after_s=90.0,
        breakers={},
        oldest_pending_age_s=0.0,
        overall_timeout_s=10.0,
    )
    return replace(healthy, **kw)


def test_bridge_facts_become_problems_an_operator_can_act_on() -> None:
    assert bridge_problems(bridge(), NOW) == []
    assert bridge_problems(bridge(telegram_ok_age_s=None), NOW) == []  # not polled yet, nothing failed
    (never,) = bridge_problems(bridge(telegram_ok_age_s=None, telegram_failures=3, telegram_error="401"), NOW)
    assert never.fatal and never.text == "Telegram has not answered yet (3 failed calls): 401"
    (stale,) = bridge_problems(bridge(telegram_ok_age_s=120.0, telegram_failures=9), NOW)
    assert stale.fatal and stale.text.startswith("Telegram has not answered for 120s")
    (flaky,) = bridge_problems(
        bridge(telegram_ok_age_s=20.0, telegram_failures=1, telegram_error="timeout"), NOW
    )
    assert not flaky.fatal and flaky.text == "Telegram calls are failing (1 failed call): timeout"
    (open_breaker,) = bridge_problems(bridge(breakers={"app": ("open", NOW + 2.5)}), NOW)
    assert not open_breaker.fatal
    assert open_breaker.text == "breaker towards app is open, next probe in 2.5s"
    (probing,) = bridge_problems(bridge(breakers={"app": ("half_open", None)}), NOW)
    assert probing.text == "breaker towards app is half-open"
    (overdue,) = bridge_problems(bridge(oldest_pending_age_s=12.0), NOW)
    assert overdue.text == "a response has waited 12s in the outbox (overall timeout 10s)"
