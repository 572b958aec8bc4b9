"""Hostile headers and connections: nothing an unauthenticated client sends fills a log or holds a socket."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.sessions import read_session
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio

LIMITS = {
    "MCP_CASCADE_HTTP_HEADER_TIMEOUT_MS": "300",
    "MCP_CASCADE_HTTP_BODY_TIMEOUT_MS": "300",
    "MCP_CASCADE_HTTP_MAX_CONNECTIONS": "16",
}


@pytest.fixture
async def serve(home: Path) -> AsyncIterator[ServeProcess]:
    async with ServeProcess(home, "hostile", env=LIMITS) as serve:
        await serve.wait_session()
        await serve.initialize()
        yield serve


def webhook_url(serve: ServeProcess) -> str:
    session = read_session(serve.home, serve.session)
    assert session is not None
    return session.webhook_url


def address(serve: ServeProcess) -> tuple[str, int]:
    host, port = webhook_url(serve).split("//")[1].split("/")[0].split(":")
    return host, int(port)


async def deliver(serve: ServeProcess, rid: str) -> httpx.Response:
    raw = encode(body(id=rid))
    secret = (serve.home / "secret").read_text().strip()
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(webhook_url(serve), content=raw, headers=sign(secret, rid, raw))


def closed_by_peer(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        sock.recv(65536)  # EOF, or an answer before it: either way the server let go
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


async def test_trickling_clients_are_dropped_and_a_real_answer_still_gets_in(serve: ServeProcess) -> None:
    host, port = address(serve)
    trickling = []
    for _ in range(40):
        sock = socket.create_connection((host, port))
        sock.sendall(b"POST /webhook/bridge-response HTTP/1.1\r\nHost: x\r\n")
        trickling.append(sock)
    try:
        # Each trickler gets the header deadline (300 ms); none is held for the 10 s we are willing to wait.
        held = [s for s in trickling if not await anyio.to_thread.run_sync(closed_by_peer, s, 10.0)]
        assert held == []
        answer = await deliver(serve, "through:1")
        assert answer.status_code == 200, answer.text
    finally:
        for sock in trickling:
            sock.close()


async def test_a_body_sent_byte_by_byte_past_its_deadline_is_cut_off(serve: ServeProcess) -> None:
    host, port = address(serve)
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            b"POST /webhook/bridge-response HTTP/1.1\r\nHost: x\r\n"
            b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"
        )
        assert await anyio.to_thread.run_sync(closed_by_peer, sock, 10.0)
    assert (await deliver(serve, "through:2")).status_code == 200


async def test_an_oversized_header_is_refused_and_never_logged_or_audited(serve: ServeProcess) -> None:
    big = "a" * (2 * 1024 * 1024)
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):
            try:
                answer = await client.post(
                    webhook_url(serve),
                    content=b"{}",
                    headers={"webhook-id": big, "content-type": "application/json"},
                )
            except httpx.HTTPError:
                continue  # cut off while sending: refused just the same
            assert answer.status_code in (400, 431)
    assert (await deliver(serve, "through:3")).status_code == 200
    assert (serve.home / "audit.jsonl").stat().st_size < 100_000
    assert serve.stderr_path.stat().st_size < 100_000


async def test_a_webhook_id_that_is_not_an_id_is_400_before_anything_logs_it(serve: ServeProcess) -> None:
    weird = "x" * 4000 + "<script>"
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            webhook_url(serve),
            content=b"{}",
            headers={"webhook-id": weird, "content-type": "application/json"},
        )
    assert answer.status_code == 400
    assert "webhook-id" in answer.json()["error"]
    assert weird not in serve.stderr_path.read_text()
    audit = serve.home / "audit.jsonl"
    assert not audit.exists() or weird not in audit.read_text()


async def test_an_unsigned_request_with_a_real_id_adds_no_step_to_that_responses_trail(
    serve: ServeProcess,
) -> None:
    assert (await deliver(serve, "real:1")).status_code == 200
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(20):
            forged = await client.post(
                webhook_url(serve),
                content=encode(body(id="real:1")),
                headers={"webhook-id": "real:1", "content-type": "application/json"},
            )
            assert forged.status_code == 401
    deadline = time.monotonic() + 5
    trail = ""
    while time.monotonic() < deadline and '"rejected"' not in trail:
        trail = (serve.home / "audit.jsonl").read_text()
        await anyio.sleep(0.05)
    steps = [line for line in trail.splitlines() if '"real:1"' in line]
    assert steps and not any('"rejected"' in line for line in steps), steps
    warnings = [line for line in serve.stderr_path.read_text().splitlines() if "unauthenticated" in line]
    assert 1 <= sum('"level":"warning"' in line for line in warnings) <= 2
