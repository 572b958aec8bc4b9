"""The sending cascade against real serve processes: a healthy session, one down, refused, killed, stopped.

Each test checks which tier delivered (the receipt and the notification's meta
tier) and that the session saw every response exactly once. How the walk
answers each kind of failing sidecar (5xx, a rejection, slowness and the
breaker) is shown exactly, on a fake clock, in test_walk.py.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mcp_cascade.config import Config
from mcp_cascade.response import Response, make_response
from mcp_cascade.send.cascade import Receipt, Sender
from mcp_cascade.sessions import read_session
from mcp_cascade.testing import ServeProcess
from tests.cascade_helpers import (
    Recorder,
    config,
    meta_tier,
    seen,
    write_session_json,
)

pytestmark = pytest.mark.anyio


def answer(n: int | str, text: str | None = None) -> Response:
    return make_response(type="message", user_id=42, text=text or f"answer {n}", id=f"tg:1:{n}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def sender(
    home: Path, cfg: Config | None = None, **kw: object
) -> AsyncIterator[tuple[Sender, Recorder]]:
    recorder = Recorder()
    async with Sender(home, cfg or config(), recorder, **kw) as s:  # type: ignore[arg-type]
        yield s, recorder


@asynccontextmanager
async def running(home: Path, session: str) -> AsyncIterator[ServeProcess]:
    async with ServeProcess(home, session) as serve:
        await serve.wait_session()
        await serve.initialize()
        yield serve


def tiers(receipt: Receipt) -> list[tuple[int, str]]:
    return [(a.tier, a.outcome) for a in receipt.attempts]


async def test_a_healthy_session_gets_the_response_through_tier_1(home: Path) -> None:
    # Real processes on a machine that may be busy: the budget is not what this test is about
    # (the walk's budgets are proven on a fake clock in test_walk.py), so it is generous here.
    async with (
        running(home, "c-ok") as serve,
        sender(home, config(webhook_timeout_ms=10_000)) as (s, recorder),
    ):
        receipt = await s.deliver(answer(1), "c-ok")
        assert receipt.status == "delivered"
        assert receipt.tier == 1
        assert tiers(receipt) == [(1, "ok")]
        await serve.wait_channel(1)
        assert meta_tier(serve, "tg:1:1") == "1"
        assert seen(serve) == {"tg:1:1": 1}
        assert list(s.outbox.entries()) == []
        (sent,) = recorder.named("sent")
        assert sent.fields["status"] == "delivered"
        assert recorder.named("failover") == []
        assert s.breakers()["c-ok"].state == "closed"
    assert serve.bad_lines == []


async def test_no_session_json_goes_to_tier_3_and_is_delivered_when_the_server_starts(home: Path) -> None:
    async with sender(home) as (s, recorder):
        receipt = await s.deliver(answer(2), "c-down")
    assert receipt.status == "queued"
    assert receipt.tier == 3
    assert tiers(receipt) == [(1, "skipped"), (2, "skipped"), (3, "ok")]
    assert "no session.json" in receipt.attempts[0].reason
    assert [e.fields["kind"] for e in recorder.named("failover")] == ["session_down", "session_down"]
    async with running(home, "c-down") as serve:
        await serve.wait_channel(1)
        assert meta_tier(serve, "tg:1:2") == "3"
        assert seen(serve) == {"tg:1:2": 1}


async def test_connection_refused_goes_to_tier_3_at_once_and_still_acknowledges(
    home: Path,
) -> None:
    acks: list[str] = []

    async def ack(response: Response, session: str, reason: str) -> None:
        acks.append(reason)

    # A discovery file whose process is alive (this test) but whose port refuses connections.
    write_session_json(
        home, "c-refused", os.getpid(), f"http://127.0.0.1:{closed_port()}/webhook/bridge-response"
    )
    async with sender(home, ack=ack) as (s, recorder):
        receipt = await s.deliver(answer(3), "c-refused")
        await recorder.wait_for(lambda: bool(recorder.named("acknowledged")))
    assert receipt.status == "queued"
    assert receipt.tier == 3
    assert receipt.attempts[0].tier == 1
    assert receipt.attempts[0].outcome == "refused"
    # Nobody listens on the port: retrying it in tier 2 cannot help while the inbox can.
    assert [(a.tier, a.outcome) for a in receipt.attempts] == [(1, "refused"), (3, "ok")]
    assert [(e.fields["from_tier"], e.fields["to_tier"]) for e in recorder.named("failover")] == [(1, 3)]
    assert all(e.fields["kind"] == "refused" for e in recorder.named("failover"))
    assert len(acks) == 1 and "refused" in acks[0]
    async with running(home, "c-refused") as serve:
        await serve.wait_channel(1)
        assert meta_tier(serve, "tg:1:3") == "3"
        assert seen(serve) == {"tg:1:3": 1}


async def test_a_sigkilled_server_is_seen_as_down_and_its_answers_wait_in_the_inbox(home: Path) -> None:
    async with ServeProcess(home, "c-killed") as serve:
        await serve.wait_session()
        await serve.initialize()
        serve.kill(signal.SIGKILL)
        await serve.wait_exit()
        assert read_session(home, "c-killed") is not None  # left behind, its pid dead
        async with sender(home) as (s, _):
            receipt = await s.deliver(answer(4), "c-killed")
        assert receipt.tier == 3
        assert tiers(receipt) == [(1, "skipped"), (2, "skipped"), (3, "ok")]
        assert "is gone" in receipt.attempts[0].reason
        await serve.start()
        await serve.wait_session()
        await serve.initialize()
        await serve.wait_channel(1)
        assert meta_tier(serve, "tg:1:4") == "3"
        assert seen(serve) == {"tg:1:4": 1}


async def test_a_sigstopped_server_times_out_and_the_response_is_queued_within_the_budgets(
    home: Path,
) -> None:
    cfg = config()
    async with running(home, "c-stopped") as serve, sender(home, cfg) as (s, recorder):
        serve.kill(signal.SIGSTOP)
        try:
            receipt = await s.deliver(answer(5), "c-stopped")
            # Each frozen answer counts as slow; after slow_after of them the breaker opens and the
            # next response goes straight to the inbox.
            receipts = [receipt]
            while s.breakers()["c-stopped"].state != "open" and len(receipts) < 2 * cfg.slow_after:
                receipts.append(await s.deliver(answer(50 + len(receipts)), "c-stopped"))
        finally:
            serve.kill(signal.SIGCONT)
        assert [(r.status, r.tier) for r in receipts] == [("queued", 3)] * len(receipts)
        assert receipt.attempts[0].outcome == "timeout"
        # Hedged: the inbox was written when tier 1's budget ran out, tier 2 stopped once it answered.
        assert [a.tier for a in receipt.attempts if a.outcome == "ok"] == [3]
        # That the walk keeps to its budgets is proven exactly on a fake clock (test_walk.py);
        # here, on real processes, only that it is nowhere near the overall timeout.
        assert receipt.latency_ms < cfg.overall_timeout_ms / 2
        assert s.breakers()["c-stopped"].state == "open"
        (opened,) = recorder.named("breaker")
        assert (opened.fields["state"], opened.reason) == ("open", "slow")
        assert opened.response_id == receipts[-1].response_id  # the response whose attempt opened it
        await serve.wait_channel(len(receipts))
        # Requests the kernel accepted while the server was stopped are served after SIGCONT:
        # whichever path arrived first carried it, and it came through a tier the sender used.
        assert meta_tier(serve, "tg:1:5") in {str(a.tier) for a in receipt.attempts if a.outcome != "skipped"}
        assert seen(serve) == {r.response_id: 1 for r in receipts}
