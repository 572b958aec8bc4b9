"""Sockets that trickle a request head cannot exhaust a serve with few descriptors.

300 connections each send one header byte every 2 s to a real serve whose
descriptor limit is low (``RLIMIT_NOFILE`` set on the child). The sidecar's
limits (a head deadline, a connection cap) must close them, so the inbox
watcher never meets EMFILE, stderr holds no ``accept()`` traceback, and the
webhook and the inbox both deliver a good response afterwards.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.asgi import AcceptExhausted
from mcp_cascade.inbox import enqueue
from mcp_cascade.response import make_response
from mcp_cascade.soak.rig import write_config
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="RLIMIT_NOFILE of a child: Linux only"),
]

SOCKETS = 300
# What serve may hold: its own ~30, the capped connections and what one accept() batch takes before the
# cap closes it (3 x 32 at worst), and far fewer than the 300 trickling sockets.
DESCRIPTORS = 160
# Small versions of the sidecar's limits, so the test takes seconds; the defaults are 5 s, 10 s, 64.
LIMITS = {
    "http_header_timeout_ms": 1000,
    "http_body_timeout_ms": 1000,
    "http_keep_alive_ms": 1000,
    "http_max_connections": 32,
}


@contextmanager
def trickling(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that have sent the first byte of a request head, closed at the end."""
    with ExitStack() as stack:
        socks: list[socket.socket] = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection((host, port), timeout=30))
            sock.setblocking(False)
            socks.append(sock)
        yield socks


def closed_by_peer(sock: socket.socket, byte: bytes) -> bool:
    """Send the next byte of the head; whether the server has closed the connection."""
    try:
        if sock.recv(1) == b"":
            return True
    except BlockingIOError:
        pass
    except OSError:  # ECONNRESET: closed with unread bytes
        return True
    try:
        sock.send(byte)
    except BlockingIOError:
        return False
    except OSError as exc:
        return exc.errno in (errno.EPIPE, errno.ECONNRESET)
    return False


async def trickle_until_closed(socks: list[socket.socket], interval_s: float, deadline_s: float) -> int:
    """One head byte every ``interval_s`` on each open socket, until the server closed them all."""
    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\n"
    open_ = dict(enumerate(socks))
    sent = 0
    with anyio.move_on_after(deadline_s):
        while open_:
            for n, sock in list(open_.items()):
                if closed_by_peer(sock, head[sent % len(head) : sent % len(head) + 1]):
                    del open_[n]
            sent += 1
            with anyio.move_on_after(interval_s):
                while open_:  # a closed connection is seen between two bytes, no need to wait for the next
                    await anyio.sleep(0.05)
                    for n in [n for n, s in open_.items() if _eof(s)]:
                        del open_[n]
    return len(open_)


def _eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def deliver_both_ways(serve: ServeProcess, secret: str, url: str) -> Mapping[str, str]:
    """A signed webhook and an inbox file, each pushed to the client; the tier each came by."""
    raw = encode(body(id="after:webhook"))
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(url, content=raw, headers=sign(secret, "after:webhook", raw))
    assert answer.status_code == 200, answer.text
    response = make_response(type="message", user_id=42, text="by the inbox", id="after:inbox")
    enqueue(serve.home / "sessions" / serve.session / "inbox", response)
    await serve.wait_channel(2, timeout=20)
    return {n["params"]["meta"]["response_id"]: n["params"]["meta"]["tier"] for n in serve.channel()}


async def test_trickling_sockets_are_closed_and_serve_delivers_by_webhook_and_inbox_afterwards(
    home: Path,
) -> None:
    write_config(home, LIMITS)
    async with ServeProcess(home, "trickle") as serve:
        assert serve.process is not None
        pid = serve.process.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))
        info = await serve.wait_session()
        await serve.initialize()
        host, port = info.webhook_url.split("//")[1].split("/")[0].rsplit(":", 1)
        began = time.monotonic()
        with trickling(host, int(port), SOCKETS) as socks:
            still_open = await trickle_until_closed(socks, interval_s=2.0, deadline_s=30.0)
        assert still_open == 0, f"{still_open} of {SOCKETS} trickling connections held for 30 s"
        held_s = time.monotonic() - began
        tiers = await deliver_both_ways(serve, (home / "secret").read_text().strip(), info.webhook_url)
        assert tiers == {"after:webhook": "1", "after:inbox": "3"}
        assert serve.process.returncode is None and serve.process.pid == pid
        stderr = serve.stderr_text()
    assert "Too many open files" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    for event in ("watch_error", "monitor_error", "uncaught", "library_log"):
        assert f'"event":"{event}"' not in stderr, stderr[-3000:]
    print(f"{SOCKETS} trickling connections all closed by serve after {held_s:.1f} s")


async def test_a_bridge_json_that_cannot_be_read_is_no_bridge_in_health_and_serve_carries_on(
    home: Path,
) -> None:
    # What EMFILE did to the health refresh every second (and to /health, /metrics: 500), here made
    # lasting: bridge.json is a folder, so opening it fails as it did without descriptors.
    (home / "bridge" / "bridge.json").mkdir(parents=True)
    async with ServeProcess(home, "refresh") as serve, httpx.AsyncClient(timeout=10) as client:
        info = await serve.wait_session()
        await serve.initialize()
        health = await client.get(info.health_url)
        assert health.status_code in (200, 503), health.text
        assert "Is a directory" in health.json()["bridge"]["reason"]
        # Both ran the refresh that serve also runs every second, first at start-up.
        assert (await client.get(info.health_url.replace("/health", "/metrics"))).status_code == 200
        tiers = await deliver_both_ways(serve, (home / "secret").read_text().strip(), info.webhook_url)
        assert tiers == {"after:webhook": "1", "after:inbox": "3"}
        assert serve.running
        assert '"event":"monitor_error"' not in serve.stderr_text()


def test_accept_failures_for_lack_of_descriptors_are_said_once_per_interval_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    passed: list[dict[str, object]] = []
    handler = AcceptExhausted(
        lambda _loop, context: passed.append(context), every_s=10.0, clock=lambda: now[0]
    )
    loop = asyncio.new_event_loop()
    try:
        emfile = OSError(errno.EMFILE, "Too many open files")
        for t in (0.0, 0.1, 5.0, 9.9, 10.0, 10.5):
            now[0] = t
            handler(loop, {"message": "socket.accept() out of system resource", "exception": emfile})
        handler(loop, {"message": "Task exception was never retrieved"})
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_cascade.asgi"]
    said = "accept() failed: Too many open files; new connections wait in the kernel's queue"
    assert lines == [f"{said} (0 more failures since)", f"{said} (3 more failures since)"]
    assert all(r.exc_info is None for r in caplog.records)
    assert passed == [{"message": "Task exception was never retrieved"}]
