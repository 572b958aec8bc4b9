"""The sending cascade: which tier carries a response, and failover when one breaks.

:class:`Sender` is what a bridge embeds (and ``mcp-cascade send`` runs once).
For each response it first makes it durable in its own outbox, then walks the
tiers of ``tier_order``:

1. the signed webhook POST to the session's sidecar, within ``webhook_timeout_ms``,
   if the session's breaker lets it through;
2. bridge processing: the person is acknowledged directly (the :class:`AckHook`,
   in the background, retried, never blocking) and the webhook is retried with
   ``X-Cascade-Tier: 2`` on an exponential backoff inside ``bridge_timeout_ms``;
3. the atomic inbox write, which the server picks up whenever it runs.

A session whose server is not running (no session.json, or a dead pid) goes
straight to tier 3; so does one whose breaker is open, because tier 1 failed
or was slow too often. Whatever the tiers do, nothing is dropped: past
``overall_timeout_ms`` without a durable answer the response is reported as
not delivered and stays in the outbox, which is re-driven in the background
and by the next sender on the same home. The server deduplicates by id, so a
resend is never seen twice by the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from mcp_cascade.clock import SYSTEM, Clock, Random, system_random
from mcp_cascade.config import SESSION_ID_RE, Config, Loaded
from mcp_cascade.errors import ConfigError, FieldError, InvalidResponse
from mcp_cascade.events import Event, EventName, Observer
from mcp_cascade.home import ensure_home, warn_tightened
from mcp_cascade.live_config import LiveConfig
from mcp_cascade.response import Response, with_session
from mcp_cascade.send._http import Client, LazyClient, OneShotClient
from mcp_cascade.send._walk import Means, Walk
from mcp_cascade.send.acknowledge import AckHook, acknowledge
from mcp_cascade.send.breaker import BreakerSnapshot
from mcp_cascade.send.breakers import SessionBreakers
from mcp_cascade.send.grouped import Grouped
from mcp_cascade.send.outbox import CorruptEntry, Outbox, OutboxClaim
from mcp_cascade.send.receipt import Attempt, Receipt, Result
from mcp_cascade.sessions import read_session
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.wire import TIER_CHOICES, TierChoice

if TYPE_CHECKING:
    import httpx

    from mcp_cascade.remote.route import RemoteRoute
    from mcp_cascade.sessions import SessionInfo

__all__ = ["AckHook", "Attempt", "Receipt", "Sender", "send_one"]

_REDRIVE_EVERY_S = 2.0


class Sender:
    """Delivers responses to sessions through the tiers; use as ``async with Sender(...) as sender``.

    It owns one pooled HTTP client and a task group: the outbox re-drive, the
    configuration reload (when given a :class:`LiveConfig`) and tier-2
    acknowledgments run there. ``clock``, ``random`` and ``transport`` are
    seams: the system's by default, a fake clock, fixed draws and an
    in-process transport in tests. ``pooled=False`` posts on a connection of
    its own each time, without importing httpx: for a process that sends once.
    """

    def __init__(
        self,
        home: Path,
        config: LiveConfig | Config,
        observer: Observer,
        *,
        ack: AckHook | None = None,
        outbox: Path | None = None,
        clock: Clock = SYSTEM,
        random: Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        pooled: bool = True,
    ) -> None:
        self.home = home
        self._transport = transport
        self._pooled = pooled
        self._config = config
        self._observer = observer
        self._ack = ack
        self.outbox = Outbox(outbox if outbox is not None else home / "outbox")
        # Concurrent deliveries remove their outbox entries in one worker-thread hop (no fsync to share:
        # the writes stay one hop each, so their fsyncs run side by side and the journal merges them).
        self._done = Grouped(self.outbox.done_many)
        self._stored = Grouped(self._store_and_look)
        self._breakers = SessionBreakers(clock, observer)
        self._clock = clock
        self._random = random or system_random()
        self._redrive_lock = anyio.Lock()
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._means: Means | None = None
        self.remote: RemoteRoute | None = None  # set while running with nats_url

    @property
    def config(self) -> Config:
        """The configuration in force now (each delivery takes it once, at its start)."""
        return self._config.current if isinstance(self._config, LiveConfig) else self._config

    def _prepare(self) -> Signer:
        warn_tightened(self._observer, self.home, ensure_home(self.home))
        self.outbox.ensure()
        return Signer(load_or_create_secret(self.home))

    async def __aenter__(self) -> Sender:
        signer = await anyio.to_thread.run_sync(self._prepare)
        async with AsyncExitStack() as stack:
            remote = None
            if self.config.nats_url:
                from mcp_cascade.remote.route import RemoteRoute

                remote = RemoteRoute(self.config, self.home, signer, self._observer, "mcp-cascade sender")
                await stack.enter_async_context(remote.running())
            self.remote = remote
            client: Client = LazyClient(self._transport) if self._pooled else OneShotClient()
            stack.push_async_callback(client.aclose)
            self._means = Means(
                self.home,
                client,
                signer,
                self._observer,
                self._clock,
                self._random,
                self._breakers.of,
                self._start_ack,
                remote,
            )
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)
            self._tg.start_soon(self._redrive_loop)
            if isinstance(self._config, LiveConfig):
                await self._tg.start(self._config.watch, self._observer)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._tg = None
        self._means = None

    def remote_sessions(self) -> list[SessionInfo]:
        """Sessions other hosts serve (empty without ``nats_url``); safe to call from any thread."""
        return self.remote.sessions() if self.remote is not None else []

    def breakers(self) -> Mapping[str, BreakerSnapshot]:
        """Each session's breaker; ``next_probe_at`` is in unix time here."""
        return self._breakers.snapshots()

    async def deliver(
        self, response: Response, session: str, *, tier: Literal["auto", "webhook", "file"] = "auto"
    ) -> Receipt:
        """Carry ``response`` to ``session``; the receipt says how far it got and how.

        ``tier`` forces one path: ``webhook`` (tier 1 only, retried) or ``file``
        (the inbox only). Raises ConfigError for a malformed session id and
        InvalidResponse for a response addressed to another session.
        """
        if self._means is None:
            raise RuntimeError("use the sender as 'async with Sender(...) as sender'")
        if not SESSION_ID_RE.match(session):
            raise ConfigError("session", f"{session!r} is not a valid session id ([a-z0-9-]{{1,64}})")
        if tier not in TIER_CHOICES:
            raise ConfigError("tier", f"{tier!r} is not one of {', '.join(TIER_CHOICES)}")
        if response.session not in (None, session):
            raise InvalidResponse(
                "schema", [FieldError("$.session", f"is {response.session!r}, but it is sent to {session!r}")]
            )
        response = with_session(response, session)
        config = self.config
        started = self._clock.monotonic()
        claimed: OutboxClaim | None = None
        # Shielded: a put cancelled halfway would leave its lock held, unseen, until the process exits.
        with anyio.CancelScope(shield=True):
            stored, info = await self._stored((response, session, tier))
        if isinstance(stored, OSError):
            self._emit(
                "outbox",
                response,
                session,
                level="error",
                reason=f"cannot write the outbox, delivering without it: {stored}",
                fields={"action": "unavailable"},
            )
        else:
            claimed = stored
            self._emit("outbox", response, session, level="debug", fields={"action": "stored"})
        return await self._drive(claimed, response, session, tier, config, started, (info,))

    def _store_and_look(
        self, items: Sequence[tuple[Response, str, TierChoice]]
    ) -> list[tuple[OutboxClaim | OSError, SessionInfo | None] | Exception]:
        """The outbox writes and the walk's first look at each session: one worker-thread hop for the lot."""
        stored = self.outbox.put_many(items)
        looked = {session: read_session(self.home, session) for session in {item[1] for item in items}}
        return [(claim, looked[item[1]]) for claim, item in zip(stored, items, strict=True)]

    async def redrive(self) -> list[Receipt]:
        """Deliver every outbox entry no live sender is working on; one pass, oldest first.

        Runs in the background from start-up and every few seconds; call it to
        wait for a pass.
        """
        async with self._redrive_lock:
            receipts: list[Receipt] = []
            for name in await anyio.to_thread.run_sync(self.outbox.names):
                try:
                    claimed = await anyio.to_thread.run_sync(self.outbox.claim, name)
                except CorruptEntry as exc:
                    self._observer.emit(
                        Event("outbox", level="error", reason=str(exc), fields={"action": "corrupt"})
                    )
                    continue
                if claimed is None:
                    continue
                entry = claimed.entry
                self._emit(
                    "outbox",
                    entry.response,
                    entry.session,
                    fields={"action": "redrive", "age_s": round(self._clock.wall() - entry.created_at, 3)},
                )
                receipts.append(
                    await self._drive(
                        claimed,
                        entry.response,
                        entry.session,
                        entry.tier,
                        self.config,
                        self._clock.monotonic(),
                    )
                )
            return receipts

    async def _redrive_loop(self) -> None:
        while True:
            try:
                await self.redrive()
            except Exception as exc:  # task boundary: a broken outbox must not stop sending
                self._observer.emit(Event("outbox", level="error", reason=f"re-drive failed: {exc!r}"))
            # A period on the event loop, not a budget: a fake clock must not make it spin.
            await anyio.sleep(_REDRIVE_EVERY_S)

    async def _drive(
        self,
        claimed: OutboxClaim | None,
        response: Response,
        session: str,
        tier: TierChoice,
        config: Config,
        started: float,
        looked: tuple[SessionInfo | None] | None = None,
    ) -> Receipt:
        assert self._means is not None
        delivery = Walk(self._means, config, response, session, tier, started, looked)
        try:
            with self._breakers.blaming(response):
                result = await delivery.run()
        except BaseException:
            if claimed is not None:
                claimed.release()  # cancelled: the entry stays for a re-drive
            raise
        receipt = Receipt(
            response.id,
            response.correlation_id,
            session,
            result.status,
            result.tier,
            (self._clock.monotonic() - started) * 1000,
            tuple(delivery.attempts),
        )
        with anyio.CancelScope(shield=True):
            await self._settle(claimed, receipt, result, config)
        return receipt

    async def _settle(
        self, claimed: OutboxClaim | None, receipt: Receipt, result: Result, config: Config
    ) -> None:
        fields = {"status": receipt.status, "attempts": len(receipt.attempts)}
        if receipt.status != "failed":
            if claimed is not None:
                await self._done(claimed)
            self._observer.emit(receipt.event("sent", level="info", fields=fields))
        elif result.rejected:
            if claimed is not None:
                await anyio.to_thread.run_sync(claimed.reject, result.rejected)
            self._observer.emit(receipt.event("sent", level="error", reason=result.rejected, fields=fields))
        else:
            if claimed is not None:
                claimed.release()
            reason = f"not confirmed within {config.overall_timeout_ms} ms; " + (
                "kept in the outbox, retried" if claimed is not None else "the outbox was unavailable"
            )
            self._observer.emit(receipt.event("not_delivered", level="warning", reason=reason, fields=fields))
            self._observer.emit(receipt.event("sent", level="warning", reason=reason, fields=fields))

    def _start_ack(self, response: Response, session: str, reason: str, config: Config) -> None:
        if self._ack is not None and self._tg is not None:
            self._tg.start_soon(
                partial(
                    acknowledge,
                    self._ack,
                    response,
                    session,
                    reason,
                    budget_s=config.overall_timeout_ms / 1000,
                    clock=self._clock,
                    random=self._random,
                    observer=self._observer,
                )
            )

    def _emit(
        self,
        name: EventName,
        response: Response,
        session: str,
        *,
        tier: int | None = None,
        latency_ms: float | None = None,
        reason: str | None = None,
        level: str = "info",
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._observer.emit(
            Event(
                name,
                tier=tier,
                response_id=response.id,
                correlation_id=response.correlation_id,
                session=session,
                latency_ms=latency_ms,
                reason=reason,
                level=level,
                fields=fields or {},
            )
        )


def send_one(loaded: Loaded, response: Response, session: str, tier: TierChoice = "auto") -> Receipt:
    """Deliver one response with a sender of its own (``mcp-cascade send``).

    While it runs, the sender also re-drives outbox entries left by senders
    that died; whatever that pass has not finished stays for the next one.
    """
    from mcp_cascade.ops.telemetry import make_telemetry

    async def main() -> Receipt:
        telemetry = make_telemetry(loaded, "send", session, metrics_served=False)
        try:
            async with Sender(loaded.home, loaded.config, telemetry, pooled=False) as sender:
                if sender.remote is not None:  # a first look at the registry before choosing the way
                    with anyio.move_on_after(loaded.config.overall_timeout_ms / 2000):
                        await sender.remote.link.ready.wait()
                return await sender.deliver(response, session, tier=tier)
        finally:
            telemetry.close()

    return anyio.run(main)
