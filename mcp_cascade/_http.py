"""The sender's pooled HTTP client, opened on its first request.

``mcp-cascade send`` to a session that is not running never posts anything,
and importing httpx (with httpcore, and trio when installed) is a third of that
command's start-up; so the client and its imports wait for the first POST.
One client serves every session: httpx keeps a keep-alive pool per
host and port, i.e. per session's sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import anyio

if TYPE_CHECKING:
    import httpx

Answer = Literal["ok", "error", "timeout", "refused"]
# Below uvicorn's 5 s keep-alive, so a pooled connection is never reused just as the server closes it.
KEEPALIVE_S = 2.0


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

    async def exchange(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[Answer, str, int | None, Any]:
        """POST within ``timeout`` (the client is opened first, outside it): outcome, reason, status, body."""
        import httpx

        self.open()
        with anyio.move_on_after(timeout):
            try:
                answer = await self.post(url, content=body, headers=headers)
            except httpx.ConnectError as exc:
                text = str(exc)
                return "refused", "connection refused" if "refused" in text.lower() else text, None, None
            except httpx.TimeoutException as exc:
                return "timeout", f"timed out: {exc}", None, None
            except httpx.HTTPError as exc:
                return "error", str(exc) or type(exc).__name__, None, None
            try:
                payload = answer.json()
            except ValueError:
                payload = answer.text[:200]
            return "ok", "", answer.status_code, payload
        return "timeout", f"no answer within {timeout * 1000:.0f} ms", None, None
