"""The sending walk in-process, on a fake clock: budgets, failover and the breaker, exactly.

The webhook is a scripted httpx transport; each exchange takes one millisecond
of fake time, and every wait the walk makes is a fake sleep. So what is
asserted about time here holds whatever the machine is doing.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.clock import FakeClock
from mcp_cascade.config import Config
from mcp_cascade.response import Response, make_response
from mcp_cascade.send.cascade import Receipt, Sender
from mcp_cascade.sessions import SessionPaths
from tests.cascade_helpers import Recorder, config, write_session_json

pytestmark = pytest.mark.anyio
URL = "http://sidecar.test/webhook/bridge-response"
Script = Callable[[httpx.Request], httpx.Response]


def answer(n: int) -> Response:
    return make_response(type="message", user_id=42, text=f"answer {n}", id=f"tg:9:{n}")


def delivered(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "delivered"})


def unavailable(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"status": "unavailable", "error": "cannot persist"})


def failing(status: int) -> Script:
    def script(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"status": "unavailable", "error": "cannot persist"})

    return script


class Webhook(httpx.AsyncBaseTransport):
    """A sidecar that answers by ``script``; every exchange costs ``cost_s`` of fake time."""

    def __init__(self, clock: FakeClock, script: Script, cost_s: float = 0.001) -> None:
        self.clock = clock
        self.script = script
        self.cost_s = cost_s
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.clock.advance(self.cost_s)
        return self.script(request)


def slow(clock: FakeClock, seconds: float) -> Script:
    """A sidecar that takes ``seconds`` and never answers in time."""

    def script(request: httpx.Request) -> httpx.Response:
        clock.advance(seconds)
        raise httpx.ReadTimeout("no answer", request=request)

    return script


@asynccontextmanager
async def walking(
    home: Path, clock: FakeClock, webhook: Webhook, cfg: Config, draw: float = 0.5
) -> AsyncIterator[tuple[Sender, Recorder]]:
    write_session_json(home, "w", os.getpid(), URL)
    recorder = Recorder()
    async with Sender(home, cfg, recorder, clock=clock, random=lambda: draw, transport=webhook) as sender:
        yield sender, recorder


def tiers(receipt: Receipt) -> list[tuple[int, str]]:
    return [(a.tier, a.outcome) for a in receipt.attempts]


async def test_a_healthy_webhook_takes_the_response_on_tier_1_in_one_attempt(home: Path) -> None:
    clock = FakeClock()
    webhook = Webhook(clock, delivered)
    async with walking(home, clock, webhook, config()) as (sender, recorder):
        receipt = await sender.deliver(answer(1), "w")
    assert (receipt.status, receipt.tier) == ("delivered", 1)
    assert tiers(receipt) == [(1, "ok")]
    assert receipt.latency_ms == pytest.approx(1.0)
    assert len(webhook.requests) == 1 and "x-cascade-tier" not in webhook.requests[0].headers
    assert recorder.named("failover") == []


@pytest.mark.parametrize("status", [503, 500])
async def test_tier_2_retries_on_its_backoff_within_its_budget_then_the_inbox_takes_it(
    home: Path, status: int
) -> None:
    clock = FakeClock()
    webhook = Webhook(clock, failing(status))
    cfg = config(webhook_timeout_ms=100, bridge_timeout_ms=500, breaker_threshold=100)
    async with walking(home, clock, webhook, cfg, draw=1.0) as (sender, recorder):
        receipt = await sender.deliver(answer(2), "w")
    assert (receipt.status, receipt.tier) == ("queued", 3)
    # Equal jitter at its top draw: 100, 200 ms, then cut so one more 100 ms attempt fits in 500 ms
    # (each exchange took 1 ms); after that attempt none fits, and the inbox takes the response.
    assert clock.slept == pytest.approx([0.1, 0.2, 0.098], abs=1e-9)
    assert [a.tier for a in receipt.attempts] == [1, 2, 2, 2, 3]
    assert [a.status_code for a in receipt.attempts[:-1]] == [status] * 4
    assert [r.headers.get("x-cascade-tier") for r in webhook.requests] == [None, "2", "2", "2"]
    assert [(e.fields["from_tier"], e.fields["to_tier"]) for e in recorder.named("failover")] == [
        (1, 2),
        (2, 3),
    ]
    assert {e.fields["kind"] for e in recorder.named("failover")} == {"http_5xx"}


@pytest.mark.parametrize("draw", [0.0, 0.37, 0.999999])
@pytest.mark.parametrize("overall_ms", [150, 1000, 4321])
async def test_the_overall_budget_is_never_overrun_whatever_the_draws(
    home: Path, draw: float, overall_ms: int
) -> None:
    blocked = SessionPaths(home, "w")
    blocked.dir.mkdir(parents=True)
    blocked.inbox.write_text("not a directory")  # tier 3 fails too: rounds go on until the budget
    clock = FakeClock()
    webhook = Webhook(clock, unavailable)
    cfg = config(overall_timeout_ms=overall_ms, breaker_threshold=1000)
    async with walking(home, clock, webhook, cfg, draw=draw) as (sender, recorder):
        receipt = await sender.deliver(answer(3), "w")
    assert receipt.status == "failed"
    assert len([a for a in receipt.attempts if a.tier == 3]) >= 1
    # Waits are cut to the budget; only the last exchange (1 ms of fake time) may end past it.
    assert receipt.latency_ms <= overall_ms + 1.0 + 1e-6
    assert len(recorder.named("not_delivered")) == 1


async def test_a_slow_tier_1_opens_the_breaker_and_the_inbox_takes_over_until_the_probe_succeeds(
    home: Path,
) -> None:
    clock = FakeClock()
    webhook = Webhook(clock, slow(clock, 0.1))
    cfg = config(breaker_reset_ms=1000, slow_after=1)
    async with walking(home, clock, webhook, cfg) as (sender, recorder):
        first = await sender.deliver(answer(10), "w")
        assert first.tier == 3
        # The slow answer opened the breaker, so the hedged tier 2 is refused by it and the inbox takes it.
        assert tiers(first) == [(1, "timeout"), (2, "skipped"), (3, "ok")]
        assert sender.breakers()["w"].reason == "slow"
        (opened,) = recorder.named("breaker")
        assert (opened.fields["state"], opened.response_id) == ("open", "tg:9:10")

        second = await sender.deliver(answer(11), "w")
        assert tiers(second) == [(1, "skipped"), (2, "skipped"), (3, "ok")]
        assert "slow" in second.attempts[0].reason
        assert recorder.named("failover")[-1].fields["kind"] == "slow"
        assert len(webhook.requests) == 1  # nothing reached the slow sidecar while open

        webhook.script = delivered
        clock.advance(1.0)  # the breaker's wait is over: the next response is its probe
        third = await sender.deliver(answer(12), "w")
        assert tiers(third) == [(1, "ok")]
        assert sender.breakers()["w"].state == "closed"
    assert [e.fields["state"] for e in recorder.named("breaker")] == ["open", "half_open", "closed"]


async def test_a_response_the_server_rejects_is_not_retried_and_goes_to_no_other_tier(home: Path) -> None:
    clock = FakeClock()
    body = {"status": "rejected", "errors": [{"path": "$.text", "message": "bad"}]}
    webhook = Webhook(clock, lambda request: httpx.Response(422, json=body))
    async with walking(home, clock, webhook, config()) as (sender, _):
        receipt = await sender.deliver(answer(13), "w")
    assert receipt.status == "failed"
    assert tiers(receipt) == [(1, "error")]
    assert len(webhook.requests) == 1
    assert clock.slept == []
    assert not (SessionPaths(home, "w").inbox / "new").exists()
    (reason,) = (home / "outbox" / "failed").glob("*.reason")
    assert "HTTP 422" in reason.read_text()
    assert json.loads(webhook.requests[0].content)["id"] == "tg:9:13"


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


class Stuck(httpx.AsyncBaseTransport):
    """Tier 1 never answers in time; every later request waits until released (tier 2 hangs)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.requests: list[httpx.Request] = []
        self.release = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) == 1:
            self.clock.advance(0.1)
            raise httpx.ReadTimeout("no answer", request=request)
        await self.release.wait()
        return delivered(request)


async def test_a_refused_connection_goes_to_the_inbox_at_once_without_tier_2_retries(home: Path) -> None:
    clock = FakeClock()
    webhook = Webhook(clock, refused)
    cfg = config(webhook_timeout_ms=100, bridge_timeout_ms=500, breaker_threshold=100)
    async with walking(home, clock, webhook, cfg) as (sender, recorder):
        receipt = await sender.deliver(answer(20), "w")
    assert (receipt.status, receipt.tier) == ("queued", 3)
    assert tiers(receipt) == [(1, "refused"), (3, "ok")]
    assert clock.slept == [] and len(webhook.requests) == 1
    assert receipt.latency_ms == pytest.approx(1.0)  # the one refused exchange; no budget was waited
    assert [(e.fields["from_tier"], e.fields["to_tier"]) for e in recorder.named("failover")] == [(1, 3)]


async def test_a_timeout_hedges_the_inbox_takes_it_while_tier_2_still_waits(home: Path) -> None:
    clock = FakeClock()
    webhook = Stuck(clock)
    cfg = config(webhook_timeout_ms=100, bridge_timeout_ms=500, breaker_threshold=100, slow_after=100)
    async with walking(home, clock, webhook, cfg) as (sender, recorder):  # type: ignore[arg-type]
        receipt = await sender.deliver(answer(21), "w")
    assert (receipt.status, receipt.tier) == ("queued", 3)
    # Tier 2 was started beside the inbox and stopped once the inbox acknowledged.
    assert tiers(receipt) == [(1, "timeout"), (3, "ok"), (2, "skipped")]
    assert "tier 3 answered first" in receipt.attempts[-1].reason
    # The tier-1 budget, plus tier 2's first backoff (75 ms) that ran beside the inbox write on the
    # shared fake clock; never tier 2's 500 ms budget.
    assert receipt.latency_ms == pytest.approx(175.0)
    assert len(webhook.requests) == 2 and webhook.requests[1].headers["x-cascade-tier"] == "2"
    failovers = {(e.fields["from_tier"], e.fields["to_tier"]) for e in recorder.named("failover")}
    assert failovers == {(1, 2), (1, 3)}


async def test_a_late_tier_1_delivery_is_reported_as_tier_1_not_as_a_tier_2_duplicate(home: Path) -> None:
    clock = FakeClock()

    def script(request: httpx.Request) -> httpx.Response:
        if "x-cascade-tier" not in request.headers:
            clock.advance(0.1)  # tier 1's answer comes too late, though the server took it
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json={"status": "duplicate", "tier": 2, "first_tier": 1})

    webhook = Webhook(clock, script)
    cfg = config(webhook_timeout_ms=100, breaker_threshold=100, slow_after=100)
    async with walking(home, clock, webhook, cfg) as (sender, _):
        receipt = await sender.deliver(answer(22), "w")
    assert (receipt.status, receipt.tier) == ("delivered", 1)
    assert receipt.attempts[1].tier == 2 and "first by tier 1" in receipt.attempts[1].reason
