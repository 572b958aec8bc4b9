"""The receiving side in-process: the real sidecar app, engine and store, over ``httpx.ASGITransport``.

No process, no socket: what is tested is the app's answers and the engine's
bookkeeping. The wire itself (loopback HTTP, stdout frames, crashes, signals)
stays with the tests that spawn ``serve``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp.client.client import Client

from mcp_cascade.home import ensure_home
from mcp_cascade.receive.channel import ChannelDeps, build_server
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.outbound import BridgeClient
from mcp_cascade.receive.sidecar import SidecarDeps, build_app
from mcp_cascade.receive.store import Store
from mcp_cascade.response import Response
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.wire import WEBHOOK_PATH
from tests.cascade_helpers import Recorder
from tests.helpers import encode, sign


class Pushes:
    """A pusher (the MCP connection's place) that keeps what it was given and wakes waiters."""

    def __init__(self) -> None:
        self.pushed: list[tuple[Response, int, bool]] = []
        self._changed = anyio.Event()

    async def push(self, response: Response, tier: int, *, redelivered: bool) -> None:
        self.pushed.append((response, tier, redelivered))
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def ids(self) -> list[str]:
        return [response.id for response, _, _ in self.pushed]

    async def wait(self, count: int, timeout: float = 10.0) -> list[Response]:
        with anyio.fail_after(timeout):
            while len(self.pushed) < count:
                await self._changed.wait()
        return [response for response, _, _ in self.pushed]


class Frames:
    """The client's end of stdout: every frame the channel wrote."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def write(self, text: str) -> None:
        self.lines.append(text)


@dataclass
class Sidecar:
    """One session's sidecar app in-process, and what it pushed."""

    client: httpx.AsyncClient
    secret: str
    engine: Engine
    pushes: Pushes
    events: Recorder
    home: Path
    session: str

    async def post(self, raw: bytes, headers: Mapping[str, str]) -> httpx.Response:
        return await self.client.post(WEBHOOK_PATH, content=raw, headers=dict(headers))

    async def post_signed(self, data: Any, msg_id: str | None = None, **extra: str) -> httpx.Response:
        raw = data if isinstance(data, bytes) else encode(data)
        mid = msg_id if msg_id is not None else (data.get("id", "x") if isinstance(data, dict) else "x")
        return await self.post(raw, {**sign(self.secret, mid, raw), **extra})


@asynccontextmanager
async def sidecar(home: Path, session: str, *, attached: bool = True) -> AsyncIterator[Sidecar]:
    """The app of ``session``'s sidecar over a real store in ``home``, with a client attached."""
    ensure_home(home)
    paths = SessionPaths(home, session)
    paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = load_or_create_secret(home)
    events = Recorder()
    store = Store.open(paths.state_db)
    engine = Engine(store, session, events)
    pushes = Pushes()

    def health(tier: str | None) -> Mapping[str, Any]:
        return {"status": "ok", "session_id": session, "tier": tier}

    app = build_app(SidecarDeps(engine, Signer(secret), session, events, health, None))
    try:
        async with (
            engine.running(),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as client,
        ):
            if attached:
                engine.attach(pushes)
            yield Sidecar(client, secret, engine, pushes, events, home, session)
    finally:
        store.close()


@asynccontextmanager
async def mcp_client(app: Sidecar) -> AsyncIterator[tuple[Client, Frames]]:
    """An MCP client on the session's channel server over memory streams (the initialize handshake).

    Its outbound side is the real bridge client, which finds no bridge in a bare home.
    """

    def status() -> Mapping[str, Any]:
        raise AssertionError("cascade_status composes the whole serve: tested against a real one")

    async def selftest() -> Mapping[str, Any]:
        raise AssertionError("the self-test needs a whole serve: tested against a real one")

    frames = Frames()
    deps = ChannelDeps(
        engine=app.engine,
        session=app.session,
        outbound=BridgeClient(app.home, Signer(app.secret)),
        status=status,
        selftest=selftest,
        permission_relay=False,
        frames=frames,
    )
    async with Client(build_server(deps), mode="legacy") as client:
        yield client, frames
