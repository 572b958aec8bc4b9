"""The sender's HTTP clients: pooled for a sender that lives, one connection per POST for ``send``.

A long-lived sender (the bridge, the soak) keeps one httpx client: a keep-alive
pool per host and port, i.e. per session's sidecar, opened on its first request.
``mcp-cascade send`` posts once or a few times and exits; importing httpx (with
httpcore, its command-line extras and trio when installed) took longer than the
rest of that command, so it posts with :class:`OneShotClient` instead: h11 (which
uvicorn already brings) over an anyio TCP stream, closed after each answer.
Both answer :meth:`exchange` the same way, so the walk cannot tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio

if TYPE_CHECKING:
    import anyio.abc
    import h11
    import httpx

Answer = Literal["ok", "error", "timeout", "refused"]
Exchanged = tuple[Answer, str, int | None, Any]
"""An exchange's outcome, reason, HTTP status and decoded JSON body (or the body's first 200 characters)."""
# Below uvicorn's 5 s keep-alive, so a pooled connection is never reused just as the server closes it.
KEEPALIVE_S = 2.0


class Client(Protocol):
    """What a walk posts with."""

    async def exchange(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Exchanged:
        """POST within ``timeout``: outcome, reason, status, body."""

    async def aclose(self) -> None:
        """Release the client's connections (idempotent)."""


def _refused(text: str) -> Exchanged:
    return "refused", "connection refused" if "refused" in text.lower() else text, None, None


def _decoded(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")[:200]


class LazyClient:
    """``post`` like ``httpx.AsyncClient.post``; :meth:`aclose` closes the client if it was opened."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def open(self) -> None:
        """Import httpx and build the client now (call it before a request's time budget starts)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                trust_env=False,
                timeout=httpx.Timeout(30.0),
                limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
                transport=self._transport,
            )

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """POST ``content`` to ``url``."""
        self.open()
        assert self._client is not None
        return await self._client.post(url, content=content, headers=headers)

    async def aclose(self) -> None:
        """Close the pool (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def exchange(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Exchanged:
        """POST within ``timeout`` (the client is opened first, outside it): outcome, reason, status, body."""
        import httpx

        self.open()
        with anyio.move_on_after(timeout):
            try:
                answer = await self.post(url, content=body, headers=headers)
            except httpx.ConnectError as exc:
                return _refused(str(exc))
            except httpx.TimeoutException as exc:
                return "timeout", f"timed out: {exc}", None, None
            except httpx.HTTPError as exc:
                return "error", str(exc) or type(exc).__name__, None, None
            return "ok", "", answer.status_code, _decoded(answer.content)
        return "timeout", f"no answer within {timeout * 1000:.0f} ms", None, None


class OneShotClient:
    """A client for a process that sends once: a new connection per POST, closed after its answer."""

    async def aclose(self) -> None:
        """Nothing stays open between exchanges."""

    async def exchange(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Exchanged:
        """POST within ``timeout`` (h11 is imported first, outside it): outcome, reason, status, body."""
        from urllib.parse import urlsplit

        import h11

        parts = urlsplit(url)
        conn = h11.Connection(h11.CLIENT)
        fields = [("host", parts.netloc), ("content-length", str(len(body))), *headers.items()]
        request = b"".join(
            conn.send(event) or b""
            for event in (
                h11.Request(method="POST", target=parts.path or "/", headers=fields),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )
        )
        with anyio.move_on_after(timeout):
            try:
                stream = await anyio.connect_tcp(parts.hostname or "localhost", parts.port or 80)
            except OSError as exc:
                return _refused(str(exc))
            async with stream:
                try:
                    await stream.send(request)
                    status, content = await _answer(conn, stream)
                except (OSError, anyio.BrokenResourceError, h11.ProtocolError) as exc:
                    return "error", str(exc) or type(exc).__name__, None, None
            return "ok", "", status, _decoded(content)
        return "timeout", f"no answer within {timeout * 1000:.0f} ms", None, None


async def _answer(conn: h11.Connection, stream: anyio.abc.ByteStream) -> tuple[int, bytes]:
    """Read one response: its status and its whole body."""
    import h11

    status, content = 0, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                conn.receive_data(await stream.receive())
            except anyio.EndOfStream:
                conn.receive_data(b"")  # h11 says whether the answer was complete
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return status, bytes(content)
