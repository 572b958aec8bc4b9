"""The sidecar's listening socket: connections it accepts send small responses without delay."""

from __future__ import annotations

import asyncio
import socket

import anyio
import pytest

from mcp_cascade.asgi import bind_socket

pytestmark = pytest.mark.anyio


async def test_accepted_connections_have_nagle_off_so_a_split_response_is_not_held_for_an_ack() -> None:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    nodelay: list[int] = []
    seen = anyio.Event()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            nodelay.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            seen.set()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        with anyio.fail_after(5):
            client = await anyio.connect_tcp("127.0.0.1", port)
            await seen.wait()
            await client.aclose()
    finally:
        server.close()
    assert nodelay == [1]
