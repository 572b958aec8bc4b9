"""Sender behaviour around the tiers: live settings, forced tiers, the overall timeout, acknowledgments."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import pytest

from mcp_cascade.errors import ConfigError, InvalidResponse
from mcp_cascade.live_config import LiveConfig
from mcp_cascade.response import Response, make_response
from mcp_cascade.send.cascade import Receipt, Sender
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.testing import ServeProcess, point_webhook_at
from mcp_cascade.testing.faults import Fault, FaultProxy
from tests.cascade_helpers import Recorder, config, meta_tier, seen, write_session_json

pytestmark = pytest.mark.anyio


def answer(n: int | str) -> Response:
    return make_response(type="message", user_id=42, text=f"answer {n}", id=f"tg:2:{n}")


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/webhook/bridge-response"


def inbox_files(home: Path, session: str) -> list[Path]:
    return sorted((SessionPaths(home, session).inbox / "new").glob("*.json"))


async def test_a_delivery_in_flight_keeps_the_settings_it_started_with(home: Path) -> None:
    (home / "config.toml").write_text('webhook_timeout_ms = 400\ntier_order = ["webhook", "file"]\n')
    live = LiveConfig(home, {})
    recorder = Recorder()
    async with ServeProcess(home, "s-live") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        host, port = info.webhook_url.split("//")[1].split("/")[0].split(":")
        async with FaultProxy(host, int(port)) as proxy, Sender(home, live, recorder) as sender:
            point_webhook_at(home, "s-live", proxy.url("/webhook/bridge-response"))
            proxy.set(Fault.BLACKHOLE)
            receipts: list[Receipt] = []
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    receipts.append(await sender.deliver(answer(1), "s-live"))

                tg.start_soon(first)
                await proxy.wait_exchanges(1)
                # Durable in the sender's outbox while the cascade runs.
                assert [e.response.id for e in sender.outbox.entries()] == ["tg:2:1"]
                (home / "config.toml").write_text('webhook_timeout_ms = 50\ntier_order = ["file"]\n')
                assert live.reload()
            (receipt,) = receipts
            assert receipt.attempts[0].reason == "no answer within 400 ms"
            assert receipt.attempts[0].latency_ms >= 400
            assert [a.tier for a in receipt.attempts] == [1, 3]
            assert list(sender.outbox.entries()) == []
            later = await sender.deliver(answer(2), "s-live")
            assert [(a.tier, a.outcome) for a in later.attempts] == [(3, "ok")]
            await serve.wait_channel(2)
        assert meta_tier(serve, "tg:2:1") == "3"
        assert seen(serve) == {"tg:2:1": 1, "tg:2:2": 1}


async def test_the_sender_reloads_its_live_config_when_the_file_changes(home: Path) -> None:
    live = LiveConfig(home, {})
    recorder = Recorder()
    async with Sender(home, live, recorder):
        (home / "config.toml").write_text("overall_timeout_ms = 1234\n")
        await recorder.wait_for(lambda: live.current.overall_timeout_ms == 1234)


async def test_forcing_the_file_tier_skips_a_healthy_webhook(home: Path) -> None:
    async with ServeProcess(home, "s-file") as serve:
        await serve.wait_session()
        await serve.initialize()
        async with Sender(home, config(), Recorder()) as sender:
            receipt = await sender.deliver(answer(3), "s-file", tier="file")
        assert (receipt.status, receipt.tier) == ("queued", 3)
        assert [(a.tier, a.outcome) for a in receipt.attempts] == [(3, "ok")]
        await serve.wait_channel(1)
        assert meta_tier(serve, "tg:2:3") == "3"


async def test_forcing_the_webhook_never_writes_the_inbox_and_keeps_the_response_when_it_fails(
    home: Path,
) -> None:
    recorder = Recorder()
    async with Sender(home, config(overall_timeout_ms=300), recorder) as sender:
        receipt = await sender.deliver(answer(4), "s-nowhere", tier="webhook")
        assert receipt.status == "failed"
        assert receipt.tier is None
        assert {(a.tier, a.outcome) for a in receipt.attempts} == {(1, "skipped")}
        assert not SessionPaths(home, "s-nowhere").inbox.exists()
        (event,) = recorder.named("not_delivered")
        assert event.level == "warning"
        assert event.response_id == "tg:2:4"
        assert [e.response.id for e in sender.outbox.entries()] == ["tg:2:4"]


async def test_past_the_overall_timeout_it_is_reported_kept_and_delivered_by_a_later_redrive(
    home: Path,
) -> None:
    blocked = SessionPaths(home, "s-blocked")
    blocked.dir.mkdir(parents=True)
    blocked.inbox.write_text("not a directory")  # every inbox write fails
    recorder = Recorder()
    async with Sender(home, config(overall_timeout_ms=400), recorder) as sender:
        receipt = await sender.deliver(answer(5), "s-blocked")
        assert receipt.status == "failed"
        assert receipt.latency_ms >= 400
        errors = [a for a in receipt.attempts if a.tier == 3]
        assert len(errors) >= 2 and all(a.outcome == "error" for a in errors)  # retried in rounds
        assert "inbox write failed" in errors[0].reason
        assert len(recorder.named("not_delivered")) == 1
        assert [e.response.id for e in sender.outbox.entries()] == ["tg:2:5"]
        blocked.inbox.unlink()
        redriven = [r for r in await sender.redrive() if r.response_id == "tg:2:5"]
        assert [(r.status, r.tier) for r in redriven] in ([("queued", 3)], [])
        await recorder.wait_for(lambda: list(sender.outbox.entries()) == [])
    assert len(inbox_files(home, "s-blocked")) == 1


async def test_a_slow_acknowledgment_never_blocks_delivery_and_a_failing_one_is_retried(home: Path) -> None:
    calls: list[str] = []
    third = anyio.Event()
    release = anyio.Event()

    async def ack(response: Response, session: str, reason: str) -> None:
        calls.append(reason)
        if len(calls) < 3:
            raise ConnectionError("telegram is down")
        third.set()
        await release.wait()

    recorder = Recorder()
    async with Sender(home, config(), recorder, ack=ack) as sender:
        receipt = await sender.deliver(answer(6), "s-ack")
        assert receipt.status == "queued"  # returned while the acknowledgment is still pending
        with anyio.fail_after(10):
            await third.wait()
        assert len(recorder.named("ack_retry")) == 2
        assert recorder.named("acknowledged") == []
        release.set()
        await recorder.wait_for(lambda: bool(recorder.named("acknowledged")))
    (event,) = recorder.named("acknowledged")
    assert event.fields == {"ok": True, "tries": 3}
    assert "session not running" in calls[0]


async def test_a_new_server_for_the_session_closes_its_open_breaker_at_once(home: Path) -> None:
    write_session_json(home, "s-new", os.getpid(), closed_url())
    cfg = config(breaker_reset_ms=60_000)
    async with Sender(home, cfg, Recorder()) as sender:
        tripping = 0
        while sender.breakers().get("s-new") is None or sender.breakers()["s-new"].state != "open":
            tripping += 1
            await sender.deliver(answer(f"trip{tripping}"), "s-new")
        # One refusal per response (the inbox takes it at once, no tier-2 retries); threshold 5.
        assert tripping == cfg.breaker_threshold
        async with ServeProcess(home, "s-new") as serve:
            await serve.wait_session()
            await serve.initialize()
            receipt = await sender.deliver(answer(7), "s-new")
            assert (receipt.status, receipt.tier) == ("delivered", 1)
            assert sender.breakers()["s-new"].state == "closed"
            await serve.wait_for(lambda: len(seen(serve)) == tripping + 1)
            assert meta_tier(serve, "tg:2:7") == "1"
            assert seen(serve) == {"tg:2:7": 1, **{f"tg:2:trip{n}": 1 for n in range(1, tripping + 1)}}


async def test_deliver_refuses_a_malformed_session_id_and_a_response_for_another_session(home: Path) -> None:
    async with Sender(home, config(), Recorder()) as sender:
        with pytest.raises(ConfigError, match="session"):
            await sender.deliver(answer(8), "Not/A/Session")
        other = make_response(type="message", user_id=1, text="x", session="elsewhere")
        with pytest.raises(InvalidResponse, match=r"\$\.session"):
            await sender.deliver(other, "s-here")
        assert list(sender.outbox.entries()) == []
