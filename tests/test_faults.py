"""The fault-injecting TCP proxy, against a real echo target over loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from mcp_cascade.faults import Fault, FaultProxy

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
