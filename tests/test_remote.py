"""Sessions on another host through a real nats-server: once, in order, through every failure.

Two homes stand for two hosts: serve runs in home B, the senders in home A;
they share nothing but NATS and the copied secret. The nats-server processes
are real (random ports, file storage under tmp_path) and are SIGKILLed for the
crash cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.remote.servers import NatsCluster, NatsNode
from mcp_cascade.testing import ServeProcess
from tests.remote_helpers import (
    answer,
    cli,
    cli_env,
    contents,
    deliver_until_durable,
    iter_texts,
    nats,
    nats_env,
    needs_nats,
    remote_sender,
    two_homes,
)

pytestmark = [pytest.mark.anyio, needs_nats]
SESSION = "proj-b"


async def started(home: Path, url: str, **env: str) -> ServeProcess:
    serve = ServeProcess(home, SESSION, env=nats_env(url, **env))
    await serve.__aenter__()
    await serve.wait_session()
    await serve.initialize()
    return serve


async def registered(url: str, home_a: Path) -> None:
    """Wait until a sender in home A sees the session as served on another host."""
    async with remote_sender(home_a, url) as (sender, _):
        assert sender.remote is not None
        with anyio.fail_after(30):
            while (await sender.remote.place(SESSION))[0] != "remote":  # noqa: ASYNC110 - a registry poll
                await anyio.sleep(0.05)


async def test_send_and_a_sender_reach_a_session_on_another_host_once_and_in_order(tmp_path: Path) -> None:
    home_a, home_b = two_homes(tmp_path)
    async with nats(tmp_path) as server:
        serve = await started(home_b, server.url)
        try:
            await registered(server.url, home_a)
            done = await anyio.run_process(
                cli(
                    "send",
                    "--home",
                    str(home_a),
                    "--session",
                    SESSION,
                    "--text",
                    "from the shell",
                    "--id",
                    "c:1",
                ),
                env=cli_env(server.url),
                check=False,
            )
            receipt = json.loads(done.stdout)
            assert done.returncode == 0, done.stderr.decode()
            assert (receipt["status"], receipt["tier"]) == ("delivered", 4)
            assert "PubAck" in receipt["attempts"][0]["reason"]

            texts = list(iter_texts("m", 30))
            async with remote_sender(home_a, server.url) as (sender, events):
                receipts = [await sender.deliver(answer(t, SESSION), SESSION) for t in texts]
                again = await sender.deliver(answer(texts[3], SESSION), SESSION)  # a resend: same id
            assert {r.tier for r in receipts} == {4}
            assert all(r.status in ("delivered", "queued") for r in receipts)
            assert again.status in ("delivered", "queued")
            await serve.wait_channel(31)
            await anyio.sleep(0.5)  # room for a wrongly repeated push to show
            assert contents(serve) == ["from the shell", *texts]
            metas = [n["params"]["meta"] for n in serve.channel()]
            assert {m["tier"] for m in metas} == {"4"} and not any("redelivered" in m for m in metas)
            assert events.named("sent") and all(e.tier == 4 for e in events.named("attempt"))
            status = await anyio.run_process(
                cli("inspect", "status", "--json", "--home", str(home_a), "--nats-url", server.url),
                env=cli_env(server.url),
                check=False,
            )
            listed = {v["session"]: v for v in json.loads(status.stdout)["sessions"]}
            assert listed[SESSION]["liveness"] == "remote" and listed[SESSION]["host"], listed
            audit = (home_b / "audit.jsonl").read_text()
            assert audit.count('"t:proj-b:m-003"') >= 2  # received/durable/pushed records in B's trail
        finally:
            await serve.__aexit__(None, None, None)


async def test_a_stopped_session_s_answers_wait_in_the_stream_and_arrive_once_after_restart(
    tmp_path: Path,
) -> None:
    home_a, home_b = two_homes(tmp_path)
    async with nats(tmp_path) as server:
        serve = await started(home_b, server.url)
        await registered(server.url, home_a)
        await serve.__aexit__(None, None, None)  # stdin closed: Claude Code quit

        texts = list(iter_texts("while-down", 8))
        async with remote_sender(home_a, server.url) as (sender, _):
            receipts = [await sender.deliver(answer(t, SESSION), SESSION) for t in texts]
        assert [(r.status, r.tier) for r in receipts] == [("queued", 4)] * 8

        serve = await started(home_b, server.url)
        try:
            await serve.wait_channel(8, timeout=30)
            await anyio.sleep(0.5)
            assert contents(serve) == texts
        finally:
            await serve.__aexit__(None, None, None)


async def _stream_through_faults(tmp_path: Path, cluster: NatsCluster, fault: str, count: int) -> None:
    """Send ``count`` answers one after another while ``fault`` happens at a third of the way."""
    home_a, home_b = two_homes(tmp_path)
    replicas = {"nats_replicas": "3"} if len(cluster.nodes) == 3 else {}
    serve = await started(home_b, cluster.url, **replicas)
    try:
        await registered(cluster.url, home_a)
        texts = list(iter_texts(fault, count))
        async with remote_sender(home_a, cluster.url, **replicas) as (sender, _):
            for i, text in enumerate(texts):
                if i == count // 3:
                    await anyio.to_thread.run_sync(_fault, cluster, fault)
                await deliver_until_durable(sender, answer(text, SESSION), SESSION)
        await serve.wait_channel(count, timeout=60)
        await anyio.sleep(1.0)
        got = contents(serve)
        assert got == texts, f"lost {sorted(set(texts) - set(got))}, doubled {len(got) - len(set(got))}"
    finally:
        await serve.__aexit__(None, None, None)


def _fault(cluster: NatsCluster, fault: str) -> None:
    node: NatsNode = cluster.nodes[0]
    node.kill()
    if fault == "restart":
        node.start()
        node.wait_ready()


async def test_nats_server_sigkilled_and_restarted_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    async with nats(tmp_path) as server:
        await _stream_through_faults(tmp_path, server, "restart", 45)


async def test_a_cluster_node_sigkilled_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    async with nats(tmp_path, size=3) as cluster:
        await _stream_through_faults(tmp_path, cluster, "node-kill", 45)


async def test_serve_starts_without_nats_serves_locally_and_joins_when_nats_comes_up(tmp_path: Path) -> None:
    home_a, home_b = two_homes(tmp_path)
    cluster = NatsCluster(tmp_path / "nats")
    node = cluster.nodes[0]
    serve = await started(home_b, cluster.url)  # nothing listens there yet
    try:
        local = await anyio.run_process(
            cli("send", "--home", str(home_b), "--session", SESSION, "--text", "local while NATS is down"),
            check=False,
        )
        assert json.loads(local.stdout)["tier"] == 1
        await serve.wait_channel(1)
        assert "nats_down" in serve.stderr_path.read_text()
        info = await serve.wait_session()
        async with httpx.AsyncClient() as client:
            health = (await client.get(info.health_url)).json()
        assert health["tiers"]["nats"]["status"] == "down" and health["status"] == "degraded"
        assert health["tiers"]["webhook"]["status"] == "ok"

        await anyio.to_thread.run_sync(node.start)
        await anyio.to_thread.run_sync(node.wait_ready)
        await registered(cluster.url, home_a)
        async with remote_sender(home_a, cluster.url) as (sender, _):
            receipt = await deliver_until_durable(sender, answer("remote once NATS is up", SESSION), SESSION)
        assert receipt.tier == 4
        await serve.wait_channel(2)
        assert contents(serve) == ["local while NATS is down", "remote once NATS is up"]
        async with httpx.AsyncClient() as client:
            health = (await client.get(info.health_url)).json()
        assert health["tiers"]["nats"]["status"] == "ok"
    finally:
        await serve.__aexit__(None, None, None)
        await anyio.to_thread.run_sync(cluster.close)


async def test_the_bridge_lists_a_session_of_another_host_and_carries_answers_to_it_once(
    tmp_path: Path,
) -> None:
    from mcp_cascade.remote.conn import host_name
    from mcp_cascade.testing.fake_api import FakeTelegram
    from tests.bridge_helpers import ALICE, bridge, greet, message_with

    home_a, home_b = two_homes(tmp_path)
    async with nats(tmp_path) as server, FakeTelegram().serving() as fake:
        serve = await started(home_b, server.url)
        try:
            await registered(server.url, home_a)
            async with bridge(home_a, fake, allow=[ALICE.id], env=nats_env(server.url)):
                await greet(fake)
                with anyio.fail_after(30):  # the bridge reads the registry every 2 s
                    while True:
                        fake.message(ALICE, "/sessions")
                        listed = await fake.wait_for(message_with(fake, ALICE.id, "ession"))
                        if SESSION in listed.text:
                            break
                        await anyio.sleep(0.5)
                assert f"on {host_name()}" in listed.text
                for text in ("first from the phone", "second from the phone"):
                    fake.message(ALICE, text)
                await serve.wait_channel(2, timeout=30)
                await anyio.sleep(0.5)
            assert contents(serve) == ["first from the phone", "second from the phone"]
            assert {n["params"]["meta"]["tier"] for n in serve.channel()} == {"4"}
        finally:
            await serve.__aexit__(None, None, None)
