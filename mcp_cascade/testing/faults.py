"""A fault-injecting TCP proxy for tests, benchmarks and the demo.

It listens on 127.0.0.1 (any free port) and forwards to a target. A fault is
chosen per *exchange*: the bytes a client sends until the target answers (one
HTTP/1.1 request on a kept-alive connection), so pooled connections meet
faults too. The plan can be switched at any time; new exchanges follow it.

- ``pass``: forward both ways.
- ``reset``: reset the client connection (RST) without forwarding the request.
- ``reset_after``: forward the request, then reset the client instead of
  forwarding the answer (the target acted on it; the client cannot know).
- ``latency``: hold the request ``latency_s`` before forwarding it; if the
  client gives up first, what was held is dropped with the connection.
- ``blackhole``: accept the request, never forward it, never answer.
- ``half_close``: forward the request, then close the client-bound direction
  (FIN) without an answer.
- ``trickle``: forward the request, then dribble the answer back
  ``trickle_bytes`` at a time every ``trickle_interval_s``.
- ``http_503``: read the HTTP/1.1 request, never forward it, and answer
  ``503 {"status":"unavailable"}`` as a sidecar that cannot persist does.

``unless`` spares the exchanges whose first bytes contain it (case-insensitive),
e.g. ``b"x-cascade-tier: 2"`` to fail only first attempts. :meth:`FaultProxy.refuse`
stops listening altogether (connections are refused, open ones reset) until
:meth:`FaultProxy.listen` opens the same port again.

``mix`` draws one of these per exchange with the given weights, from a seeded
random generator, so a run can be repeated.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

__all__ = ["Fault", "FaultProxy", "Plan"]


class Fault(StrEnum):
    """What happens to one exchange."""

    PASS = "pass"
    RESET = "reset"
    RESET_AFTER = "reset_after"
    LATENCY = "latency"
    BLACKHOLE = "blackhole"
    HALF_CLOSE = "half_close"
    TRICKLE = "trickle"
    HTTP_503 = "http_503"


@dataclass(frozen=True, slots=True)
class Plan:
    """The fault for new exchanges (``fault``), or a weighted random ``mix`` of faults."""

    fault: Fault = Fault.PASS
    mix: Mapping[Fault, float] = field(default_factory=dict)
    latency_s: float = 0.5
    trickle_bytes: int = 1
    trickle_interval_s: float = 0.01
    unless: bytes = b""


_UNAVAILABLE = b'{"status":"unavailable","error":"cannot persist: injected fault"}'
_ANSWER_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_UNAVAILABLE), _UNAVAILABLE)
)


class _Connection:
    def __init__(self, client: SocketStream, upstream: SocketStream, tg: TaskGroup) -> None:
        self.client = client
        self.upstream = upstream
        self.tg = tg
        self.fault: Fault | None = None  # the current exchange's fault
        self.answered = False  # the target has answered in the current exchange
        self.half_closed = False
        self.plan = Plan()
        self.request = b""  # what an http_503 exchange has read of its request so far
        self.held_send, self.held_receive = anyio.create_memory_object_stream[tuple[float, bytes]](1024)


class FaultProxy:
    """``async with FaultProxy(host, port) as proxy``: forwards ``proxy.port`` to ``host:port``."""

    def __init__(self, target_host: str, target_port: int, *, seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.plan = Plan()
        self.counts: Counter[Fault] = Counter()
        self.connections = 0
        self._random = random.Random(seed)
        self._changed = anyio.Event()
        self._tg: TaskGroup | None = None
        self._port = 0
        self._serving: tuple[anyio.CancelScope, anyio.Event] | None = None
        self._clients: set[SocketStream] = set()

    @property
    def port(self) -> int:
        """The port the proxy listens on (127.0.0.1)."""
        return self._port

    def url(self, path: str = "") -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self._port}{path}"

    def set(
        self,
        fault: Fault | str,
        *,
        latency_s: float = 0.5,
        trickle_bytes: int = 1,
        trickle_interval_s: float = 0.01,
        unless: bytes = b"",
    ) -> None:
        """Apply ``fault`` to every new exchange (but those whose first bytes contain ``unless``)."""
        self.plan = Plan(Fault(fault), {}, latency_s, trickle_bytes, trickle_interval_s, unless.lower())

    def mix(
        self,
        weights: Mapping[Fault, float] | Mapping[str, float],
        *,
        seed: int | None = None,
        latency_s: float = 0.5,
        trickle_bytes: int = 1,
        trickle_interval_s: float = 0.01,
    ) -> None:
        """Draw each new exchange's fault from ``weights``; ``seed`` restarts the generator."""
        if seed is not None:
            self._random.seed(seed)
        mix = {Fault(k): float(v) for k, v in weights.items()}
        self.plan = Plan(Fault.PASS, mix, latency_s, trickle_bytes, trickle_interval_s)

    @property
    def exchanges(self) -> int:
        """How many exchanges have started so far."""
        return sum(self.counts.values())

    async def wait_exchanges(self, count: int, timeout: float = 10.0) -> None:
        """Return once ``count`` exchanges have started (TimeoutError after ``timeout``)."""
        with anyio.fail_after(timeout):
            while self.exchanges < count:
                await self._changed.wait()

    def _draw(self, plan: Plan, first: bytes) -> Fault:
        if plan.unless and plan.unless in first.lower():
            return Fault.PASS
        if not plan.mix:
            return plan.fault
        faults = list(plan.mix)
        return self._random.choices(faults, weights=[plan.mix[f] for f in faults])[0]

    async def __aenter__(self) -> FaultProxy:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self.listen()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)

    @property
    def listening(self) -> bool:
        """Whether the proxy accepts connections (False between :meth:`refuse` and :meth:`listen`)."""
        return self._serving is not None

    async def listen(self) -> None:
        """Accept connections on the proxy's port (the same one again after :meth:`refuse`)."""
        assert self._tg is not None, "use as an async context manager"
        if self._serving is not None:
            return
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self._port)
        self._port = listener.extra(SocketAttribute.local_port)
        scope, closed = anyio.CancelScope(), anyio.Event()
        self._serving = (scope, closed)

        async def serve() -> None:
            try:
                with scope:
                    async with listener:
                        await listener.serve(self._handle)
            finally:
                closed.set()

        self._tg.start_soon(serve)

    async def refuse(self) -> None:
        """Stop listening and reset every open connection: from now on, connecting is refused."""
        if self._serving is None:
            return
        (scope, closed), self._serving = self._serving, None
        for client in list(self._clients):
            _reset(client)
        scope.cancel()
        await closed.wait()

    async def _handle(self, client: SocketStream) -> None:
        self.connections += 1
        self._clients.add(client)
        try:
            async with client:
                try:
                    upstream = await anyio.connect_tcp(*self.target)
                except OSError:
                    _reset(client)
                    return
                async with upstream, anyio.create_task_group() as tg:
                    conn = _Connection(client, upstream, tg)
                    tg.start_soon(self._to_target, conn)
                    tg.start_soon(self._to_client, conn)
                    tg.start_soon(self._release_held, conn)
        finally:
            self._clients.discard(client)

    async def _answer_503(self, conn: _Connection, chunk: bytes) -> None:
        """Read one request (headers, then content-length bytes) and answer it 503 without forwarding."""
        conn.request += chunk
        head, sep, body = conn.request.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        if len(body) < length:
            return
        conn.request = b""  # the clients here never pipeline: nothing follows the body
        conn.answered = True
        await conn.client.send(_ANSWER_503)

    async def _to_target(self, conn: _Connection) -> None:
        try:
            async for chunk in conn.client:
                if conn.fault is None or conn.answered:
                    conn.plan = self.plan
                    conn.fault = self._draw(conn.plan, chunk)
                    conn.answered = False
                    self.counts[conn.fault] += 1
                    changed, self._changed = self._changed, anyio.Event()
                    changed.set()
                if conn.fault == Fault.RESET:
                    _reset(conn.client)
                    conn.tg.cancel_scope.cancel()
                    return
                if conn.fault == Fault.HTTP_503:
                    await self._answer_503(conn, chunk)
                    continue
                if conn.fault == Fault.LATENCY:
                    await conn.held_send.send((time.monotonic() + conn.plan.latency_s, chunk))
                elif conn.fault != Fault.BLACKHOLE:
                    await conn.upstream.send(chunk)
            if conn.fault in (Fault.LATENCY, Fault.BLACKHOLE):
                conn.tg.cancel_scope.cancel()  # the client is gone: drop whatever was held
                return
            await conn.upstream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            conn.tg.cancel_scope.cancel()

    async def _release_held(self, conn: _Connection) -> None:
        async for due, chunk in conn.held_receive:
            await anyio.sleep(max(0.0, due - time.monotonic()))
            try:
                await conn.upstream.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                conn.tg.cancel_scope.cancel()
                return

    async def _to_client(self, conn: _Connection) -> None:
        try:
            async for chunk in conn.upstream:
                conn.answered = True
                if conn.fault == Fault.RESET_AFTER:
                    _reset(conn.client)
                    break
                if conn.fault == Fault.HALF_CLOSE:
                    if not conn.half_closed:
                        conn.half_closed = True
                        await conn.client.send_eof()
                elif conn.fault == Fault.TRICKLE:
                    step = max(1, int(conn.plan.trickle_bytes))
                    for start in range(0, len(chunk), step):
                        await conn.client.send(chunk[start : start + step])
                        await anyio.sleep(conn.plan.trickle_interval_s)
                else:
                    await conn.client.send(chunk)
            else:
                if not conn.half_closed:
                    await conn.client.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        conn.tg.cancel_scope.cancel()


def _reset(stream: SocketStream) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
