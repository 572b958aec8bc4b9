"""The fault-injecting TCP proxy, against a real echo target over loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from mcp_cascade.testing.faults import Fault, FaultProxy

pytestmark = pytest.mark.anyio


class Target:
    """Answers each chunk it receives with b"ok:" + chunk, and records what it received and when."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.port = 0
        self.arrived = anyio.Event()

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                async for chunk in stream:
                    self.received.append((time.monotonic(), chunk))
                    self.arrived.set()
                    await stream.send(b"ok:" + chunk)
            except (anyio.BrokenResourceError, OSError):
                pass


@asynccontextmanager
async def proxied(seed: int = 0) -> AsyncIterator[tuple[Target, FaultProxy]]:
    target = Target()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    target.port = listener.extra(SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, target.handle)
        async with FaultProxy("127.0.0.1", target.port, seed=seed) as proxy:
            yield target, proxy
        tg.cancel_scope.cancel()


async def exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send ``data``; the answer, what came before EOF, or that plus b"<timeout>" / b"<reset>"."""
    answer = b""
    try:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(data)
            with anyio.move_on_after(timeout):
                while len(answer) < len(data) + 3:
                    try:
                        answer += await stream.receive()
                    except anyio.EndOfStream:
                        return answer
                return answer
            return answer + b"<timeout>"
    except (anyio.BrokenResourceError, OSError):
        return answer + b"<reset>"


async def test_pass_forwards_both_ways_and_keeps_a_connection_reusable() -> None:
    async with proxied() as (target, proxy), await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
        for n in range(3):
            await stream.send(b"req%d" % n)
            assert await stream.receive() == b"ok:req%d" % n
    assert [c for _, c in target.received] == [b"req0", b"req1", b"req2"]
    assert proxy.counts[Fault.PASS] == 3


async def test_reset_drops_the_request_and_resets_the_client() -> None:
    async with proxied() as (target, proxy):
        proxy.set(Fault.RESET)
        assert await exchange(proxy.port, b"lost") == b"<reset>"
    assert target.received == []


async def test_reset_after_lets_the_target_act_and_resets_the_client_instead_of_answering() -> None:
    async with proxied() as (target, proxy):
        proxy.set(Fault.RESET_AFTER)
        assert await exchange(proxy.port, b"acted") == b"<reset>"
    assert [c for _, c in target.received] == [b"acted"]


async def test_latency_holds_the_request_for_the_given_time() -> None:
    async with proxied() as (target, proxy):
        proxy.set(Fault.LATENCY, latency_s=0.3)
        start = time.monotonic()
        assert await exchange(proxy.port, b"slow") == b"ok:slow"
        assert target.received[0][0] - start >= 0.3


async def test_latency_drops_what_it_held_when_the_client_gives_up_first() -> None:
    async with proxied() as (target, proxy):
        proxy.set(Fault.LATENCY, latency_s=0.5)
        assert await exchange(proxy.port, b"given-up", timeout=0.05) == b"<timeout>"
        proxy.set(Fault.PASS)
        assert await exchange(proxy.port, b"after") == b"ok:after"  # the target is reachable
    assert [c for _, c in target.received] == [b"after"]


async def test_blackhole_accepts_and_never_answers() -> None:
    async with proxied() as (target, proxy):
        proxy.set(Fault.BLACKHOLE)
        assert await exchange(proxy.port, b"void", timeout=0.2) == b"<timeout>"
    assert target.received == []


async def test_half_close_forwards_the_request_then_ends_the_answer_direction() -> None:
    async with proxied() as (target, proxy):
        proxy.set(Fault.HALF_CLOSE)
        assert await exchange(proxy.port, b"half") == b""
    assert [c for _, c in target.received] == [b"half"]


async def test_trickle_dribbles_the_answer_back_slowly() -> None:
    async with proxied() as (_target, proxy):
        proxy.set(Fault.TRICKLE, trickle_bytes=2, trickle_interval_s=0.02)
        start = time.monotonic()
        assert await exchange(proxy.port, b"trickled") == b"ok:trickled"
        assert time.monotonic() - start >= 0.02 * 5  # 11 bytes, 2 at a time


async def test_a_seeded_mix_repeats_the_same_faults_and_reaches_every_kind() -> None:
    weights = {fault: 1.0 for fault in Fault}
    runs = []
    for _ in range(2):
        async with proxied() as (_target, proxy):
            proxy.mix(weights, seed=42, latency_s=0.05, trickle_interval_s=0.0)
            for n in range(60):
                await exchange(proxy.port, b"m%d" % n, timeout=0.1)
            runs.append(dict(proxy.counts))
    assert runs[0] == runs[1]
    assert set(runs[0]) == set(Fault)
    assert sum(runs[0].values()) == 60


async def test_a_refused_target_resets_the_client() -> None:
    async with proxied() as (target, proxy):
        proxy.target = ("127.0.0.1", 1)  # nothing listens on port 1
        assert await exchange(proxy.port, b"nowhere") == b"<reset>"
    assert target.received == []


async def test_http_503_reads_the_whole_request_and_answers_503_without_forwarding_it() -> None:
    request = b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n"
    async with proxied() as (target, proxy), await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
        proxy.set(Fault.HTTP_503)
        await stream.send(request)
        await stream.send(b"hel")  # the body arrives in pieces: no answer before the last one
        with anyio.move_on_after(0.1):
            assert await stream.receive() == b"never"
        await stream.send(b"lo")
        with anyio.fail_after(2):
            answer = await stream.receive()
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert answer.endswith(b'{"status":"unavailable","error":"cannot persist: injected fault"}')
        proxy.set(Fault.PASS)
        await stream.send(b"next")  # the same kept-alive connection serves the next exchange
        assert await stream.receive() == b"ok:next"
    assert [c for _, c in target.received] == [b"next"]
    assert proxy.counts[Fault.HTTP_503] == 1


async def test_unless_spares_the_exchanges_that_carry_the_marker() -> None:
    async with proxied() as (target, proxy):
        proxy.set(Fault.RESET, unless=b"X-Cascade-Tier: 2")
        assert await exchange(proxy.port, b"first try") == b"<reset>"
        assert await exchange(proxy.port, b"x-cascade-tier: 2 retry") == b"ok:x-cascade-tier: 2 retry"
    assert [c for _, c in target.received] == [b"x-cascade-tier: 2 retry"]


async def test_refuse_resets_open_connections_refuses_new_ones_and_listen_reopens_the_same_port() -> None:
    async with proxied() as (_target, proxy), await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
        port = proxy.port
        await stream.send(b"before")
        assert await stream.receive() == b"ok:before"
        await proxy.refuse()
        assert not proxy.listening
        with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
            await stream.send(b"after")
            await stream.receive()
        with pytest.raises(OSError) as refused:
            await anyio.connect_tcp("127.0.0.1", port)
        assert isinstance(refused.value.__cause__, ConnectionRefusedError)
        await proxy.listen()
        assert proxy.port == port
        assert await exchange(port, b"again") == b"ok:again"
