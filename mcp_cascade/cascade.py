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

import random
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import anyio.to_thread
import httpx
from anyio.abc import TaskGroup

from mcp_cascade.breaker import Breaker, BreakerSettings, BreakerSnapshot, Permit
from mcp_cascade.config import SESSION_ID_RE, Config, LiveConfig, Loaded, ensure_home
from mcp_cascade.errors import CascadeError, ConfigError, FieldError, InvalidResponse
from mcp_cascade.events import Event, Observer
from mcp_cascade.inbox import enqueue
from mcp_cascade.outbox import TIER_CHOICES, Claimed, CorruptEntry, Outbox, TierChoice
from mcp_cascade.response import Response, with_session
from mcp_cascade.retry import Backoff, RetrySchedule
from mcp_cascade.sessions import SessionInfo, SessionPaths, read_session
from mcp_cascade.sidecar import TIER_HEADER
from mcp_cascade.signing import Signer, load_or_create_secret

__all__ = ["AckHook", "Attempt", "Receipt", "Sender", "send_one"]

Status = Literal["delivered", "queued", "failed"]
Outcome = Literal["ok", "error", "timeout", "refused", "skipped"]
TIER_NUMBERS = {"webhook": 1, "bridge": 2, "file": 3}
# Answers that say the response itself is unacceptable: another tier would not change that.
_PERMANENT = frozenset({400, 413, 415, 422})
_REDRIVE_EVERY_S = 2.0
# Below uvicorn's 5 s keep-alive, so a pooled connection is never reused just as the server closes it.
_KEEPALIVE_S = 2.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one tier: what happened, why, and how long it took."""

    tier: int
    outcome: Outcome
    reason: str
    latency_ms: float
    status_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "tier": self.tier,
            "outcome": self.outcome,
            "reason": self.reason,
            "latency_ms": round(self.latency_ms, 3),
            "status_code": self.status_code,
        }


@dataclass(frozen=True, slots=True)
class Receipt:
    """The result of one delivery.

    ``delivered``: pushed into the session (or it had it already); ``queued``:
    durable at the server (a 202, or the inbox) and pushed when it can be;
    ``failed``: nothing durable at the server yet (the outbox keeps it).
    """

    response_id: str
    correlation_id: str
    session: str
    status: Status
    tier: int | None
    latency_ms: float
    attempts: tuple[Attempt, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what ``mcp-cascade send`` prints)."""
        return {
            "response_id": self.response_id,
            "correlation_id": self.correlation_id,
            "session": self.session,
            "status": self.status,
            "tier": self.tier,
            "latency_ms": round(self.latency_ms, 3),
            "attempts": [a.to_dict() for a in self.attempts],
        }


class AckHook(Protocol):
    """Tier 2's direct acknowledgment to the person (the bridge answers in Telegram)."""

    async def __call__(self, response: Response, session: str, reason: str) -> None:
        """Tell the person their answer is taken care of; raise to have it retried."""


@dataclass(frozen=True, slots=True)
class _Result:
    status: Status
    tier: int | None
    rejected: str = ""  # why the server refused the response itself


@dataclass(slots=True)
class _Route:
    breaker: Breaker
    identity: tuple[int, str] | None


def breaker_settings(config: Config) -> BreakerSettings:
    """The breaker settings of a configuration."""
    return BreakerSettings(
        threshold=config.breaker_threshold,
        slow_after=config.slow_after,
        reset_s=config.breaker_reset_ms / 1000,
        max_reset_s=config.breaker_max_reset_ms / 1000,
    )


class Sender:
    """Delivers responses to sessions through the tiers; use as ``async with Sender(...) as sender``.

    It owns one pooled HTTP client and a task group: the outbox re-drive, the
    configuration reload (when given a :class:`LiveConfig`) and tier-2
    acknowledgments run there.
    """

    def __init__(
        self,
        home: Path,
        config: LiveConfig | Config,
        observer: Observer,
        *,
        ack: AckHook | None = None,
        outbox: Path | None = None,
    ) -> None:
        self.home = home
        self._config = config
        self._observer = observer
        self._ack = ack
        self.outbox = Outbox(outbox if outbox is not None else home / "outbox")
        self._routes: dict[str, _Route] = {}
        self._clock = time.monotonic
        self._random = random.Random().random
        self._redrive_lock = anyio.Lock()
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._client: httpx.AsyncClient | None = None
        self._signer: Signer | None = None

    @property
    def config(self) -> Config:
        """The configuration in force now (each delivery takes it once, at its start)."""
        return self._config.current if isinstance(self._config, LiveConfig) else self._config

    def _prepare(self) -> None:
        ensure_home(self.home)
        self._signer = Signer(load_or_create_secret(self.home))
        self.outbox.ensure()

    async def __aenter__(self) -> Sender:
        await anyio.to_thread.run_sync(self._prepare)
        async with AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(
                httpx.AsyncClient(
                    trust_env=False,
                    timeout=httpx.Timeout(30.0),
                    limits=httpx.Limits(keepalive_expiry=_KEEPALIVE_S),
                )
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
        self._client = None

    def breakers(self) -> Mapping[str, BreakerSnapshot]:
        """Each session's breaker; ``next_probe_at`` is in unix time here."""
        now, mono = time.time(), self._clock()
        return {
            session: _wall(route.breaker.snapshot(), now, mono) for session, route in self._routes.items()
        }

    async def deliver(
        self, response: Response, session: str, *, tier: Literal["auto", "webhook", "file"] = "auto"
    ) -> Receipt:
        """Carry ``response`` to ``session``; the receipt says how far it got and how.

        ``tier`` forces one path: ``webhook`` (tier 1 only, retried) or ``file``
        (the inbox only). Raises ConfigError for a malformed session id and
        InvalidResponse for a response addressed to another session.
        """
        if self._tg is None:
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
        started = time.perf_counter()
        claimed: Claimed | None = None
        try:
            claimed = await anyio.to_thread.run_sync(self.outbox.put, response, session, tier)
        except OSError as exc:
            self._emit(
                "outbox",
                response,
                session,
                level="error",
                reason=f"cannot write the outbox, delivering without it: {exc}",
                fields={"action": "unavailable"},
            )
        else:
            self._emit("outbox", response, session, level="debug", fields={"action": "stored"})
        return await self._drive(claimed, response, session, tier, config, started)

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
                    fields={"action": "redrive", "age_s": round(time.time() - entry.created_at, 3)},
                )
                receipts.append(
                    await self._drive(
                        claimed, entry.response, entry.session, entry.tier, self.config, time.perf_counter()
                    )
                )
            return receipts

    async def _redrive_loop(self) -> None:
        while True:
            try:
                await self.redrive()
            except (OSError, CascadeError) as exc:  # task boundary: a broken outbox must not stop sending
                self._observer.emit(Event("outbox", level="error", reason=f"re-drive failed: {exc!r}"))
            await anyio.sleep(_REDRIVE_EVERY_S)

    async def _drive(
        self,
        claimed: Claimed | None,
        response: Response,
        session: str,
        tier: TierChoice,
        config: Config,
        started: float,
    ) -> Receipt:
        delivery = _Delivery(self, config, response, session, tier, started)
        try:
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
            (time.perf_counter() - started) * 1000,
            tuple(delivery.attempts),
        )
        with anyio.CancelScope(shield=True):
            await self._settle(claimed, receipt, result, config)
        return receipt

    async def _settle(
        self, claimed: Claimed | None, receipt: Receipt, result: _Result, config: Config
    ) -> None:
        fields = {"status": receipt.status, "attempts": len(receipt.attempts)}
        if receipt.status != "failed":
            if claimed is not None:
                await anyio.to_thread.run_sync(claimed.done)
            self._emit_receipt("sent", receipt, level="info", fields=fields)
        elif result.rejected:
            if claimed is not None:
                await anyio.to_thread.run_sync(claimed.reject, result.rejected)
            self._emit_receipt("sent", receipt, level="error", reason=result.rejected, fields=fields)
        else:
            if claimed is not None:
                claimed.release()
            reason = f"not confirmed within {config.overall_timeout_ms} ms; " + (
                "kept in the outbox, retried" if claimed is not None else "the outbox was unavailable"
            )
            self._emit_receipt("not_delivered", receipt, level="warning", reason=reason, fields=fields)
            self._emit_receipt("sent", receipt, level="warning", reason=reason, fields=fields)

    def _route(self, session: str, info: SessionInfo | None, config: Config) -> _Route:
        settings = breaker_settings(config)
        identity = (info.pid, info.webhook_url) if info is not None else None
        route = self._routes.get(session)
        if route is None:
            breaker = Breaker(settings, self._clock, partial(self._breaker_changed, session))
            route = self._routes[session] = _Route(breaker, identity)
            return route
        route.breaker.configure(settings)
        if identity is not None and identity != route.identity:
            if route.identity is not None:
                route.breaker.reset()  # a new server: what the old one did says nothing about it
            route.identity = identity
        return route

    def _breaker_changed(self, session: str, snapshot: BreakerSnapshot) -> None:
        wall = _wall(snapshot, time.time(), self._clock())
        self._observer.emit(
            Event(
                "breaker",
                session=session,
                level="warning" if snapshot.state == "open" else "info",
                reason=snapshot.reason or None,
                fields={
                    "state": snapshot.state,
                    "failures": snapshot.failures,
                    "slow": snapshot.slow,
                    "next_probe_at": wall.next_probe_at,
                },
            )
        )

    async def _acknowledge(self, response: Response, session: str, reason: str, config: Config) -> None:
        assert self._ack is not None
        schedule = RetrySchedule(
            config.overall_timeout_ms / 1000,
            reserve_s=Backoff().initial_s,
            clock=self._clock,
            random=self._random,
        )
        tries = 0
        while True:
            tries += 1
            started = time.perf_counter()
            try:
                with anyio.fail_after(max(schedule.remaining(), 0.001)):
                    await self._ack(response, session, reason)
            except Exception as exc:  # the hook is the embedding bridge's code: any failure is retried
                error = f"{type(exc).__name__}: {exc}"
                self._emit("ack_retry", response, session, tier=2, level="debug", reason=error)
            else:
                self._emit(
                    "acknowledged",
                    response,
                    session,
                    tier=2,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    fields={"ok": True, "tries": tries},
                )
                return
            delay = schedule.next_delay()
            if delay is None:
                self._emit(
                    "acknowledged",
                    response,
                    session,
                    tier=2,
                    level="warning",
                    reason=f"gave up after {tries} tries: {error}",
                    fields={"ok": False, "tries": tries},
                )
                return
            await anyio.sleep(delay)

    def _emit(
        self,
        name: str,
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

    def _emit_receipt(
        self, name: str, receipt: Receipt, *, level: str, fields: Mapping[str, Any], reason: str | None = None
    ) -> None:
        self._observer.emit(
            Event(
                name,
                tier=receipt.tier,
                response_id=receipt.response_id,
                correlation_id=receipt.correlation_id,
                session=receipt.session,
                latency_ms=receipt.latency_ms,
                reason=reason,
                level=level,
                fields=fields,
            )
        )


def _wall(snapshot: BreakerSnapshot, now: float, mono: float) -> BreakerSnapshot:
    if snapshot.next_probe_at is None:
        return snapshot
    return replace(snapshot, next_probe_at=round(now + (snapshot.next_probe_at - mono), 3))


class _Delivery:
    """One response's way through the tiers, under the configuration it started with."""

    def __init__(
        self,
        sender: Sender,
        config: Config,
        response: Response,
        session: str,
        choice: TierChoice,
        started: float,
    ) -> None:
        self.sender = sender
        self.config = config
        self.response = response
        self.session = session
        self.choice = choice
        self.clock = sender._clock
        elapsed = time.perf_counter() - started
        self.deadline = self.clock() + config.overall_timeout_ms / 1000 - elapsed
        self.webhook_s = config.webhook_timeout_ms / 1000
        self.attempts: list[Attempt] = []
        self.kind = ""  # why the last tier did not take the response (the failover reason)
        self.acked = False
        self.tier1_tried = False
        assert sender._client is not None and sender._signer is not None
        self.client = sender._client
        self.signer = sender._signer

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def plan(self) -> tuple[int, ...]:
        if self.choice == "file":
            return (3,)
        if self.choice == "webhook":
            return (1,)
        return tuple(TIER_NUMBERS[name] for name in self.config.tier_order)

    async def run(self) -> _Result:
        rounds = RetrySchedule(self.remaining(), clock=self.clock, random=self.sender._random)
        while True:
            result = await self.round()
            if result is not None:
                return result
            delay = rounds.next_delay()
            if delay is None:
                return _Result("failed", None)
            await anyio.sleep(delay)
            if self.remaining() <= 0:
                return _Result("failed", None)

    async def round(self) -> _Result | None:
        info = read_session(self.sender.home, self.session)
        route = self.sender._route(self.session, info, self.config)
        down = None
        if info is None:
            down = "session not running (no session.json)"
        elif not info.alive:
            down = f"session not running (pid {info.pid} is gone)"
        previous: int | None = None
        for tier in self.plan():
            if previous is not None:
                self.failover(previous, tier)
            if tier == 1:
                result = await self.tier1(info, route, down)
            elif tier == 2:
                result = await self.tier2(info, route, down)
            else:
                result = await self.tier3(down)
            if result is not None:
                return result
            previous = tier
        return None

    async def tier1(self, info: SessionInfo | None, route: _Route, down: str | None) -> _Result | None:
        if down is not None or info is None:
            self.skip(1, down or "", "session_down")
            return None
        permit = route.breaker.allow()
        if permit == "reject":
            self.skip_open(1, route)
            return None
        self.tier1_tried = True
        return await self.post(info.webhook_url, route, 1, permit, min(self.webhook_s, self.remaining()))

    async def tier2(self, info: SessionInfo | None, route: _Route, down: str | None) -> _Result | None:
        self.acknowledge()
        if down is not None or info is None:
            self.skip(2, down or "", "session_down")
            return None
        budget = min(self.config.bridge_timeout_ms / 1000, self.remaining())
        schedule = RetrySchedule(
            budget, reserve_s=min(self.webhook_s, budget), clock=self.clock, random=self.sender._random
        )
        wait = self.tier1_tried
        while True:
            if wait:
                delay = schedule.next_delay()
                if delay is None:
                    return None
                await anyio.sleep(delay)
            wait = True
            permit = route.breaker.allow()
            if permit == "reject":
                self.skip_open(2, route)
                return None
            timeout = min(self.webhook_s, schedule.remaining())
            if timeout <= 0:
                return None
            result = await self.post(info.webhook_url, route, 2, permit, timeout)
            if result is not None:
                return result

    async def tier3(self, down: str | None) -> _Result | None:
        timeout = self.remaining()
        if timeout <= 0:
            return None
        inbox = SessionPaths(self.sender.home, self.session).inbox
        started = time.perf_counter()
        try:
            with anyio.fail_after(timeout):
                await anyio.to_thread.run_sync(enqueue, inbox, self.response, abandon_on_cancel=True)
        except TimeoutError:
            self.record(3, "timeout", f"inbox write took over {timeout * 1000:.0f} ms", started)
            self.kind = "timeout"
            return None
        except OSError as exc:
            self.record(3, "error", f"inbox write failed: {exc}", started)
            self.kind = "error"
            return None
        self.record(3, "ok", "queued in the inbox" + (f"; {down}" if down else ""), started)
        return _Result("queued", 3)

    async def post(
        self, url: str, route: _Route, tier: int, permit: Permit, timeout: float
    ) -> _Result | None:
        body = self.response.to_json()
        headers = self.signer.headers(self.response.id, body)
        headers["content-type"] = "application/json"
        headers["x-correlation-id"] = self.response.correlation_id
        if tier == 2:
            headers[TIER_HEADER] = "2"
        started = time.perf_counter()
        reported = False
        try:
            outcome, reason, code, payload = await self.exchange(url, body, headers, timeout)
            result: _Result | None = None
            if outcome == "ok" and code is not None:
                result, outcome, reason = _interpret(code, payload, tier)
            slow = outcome == "timeout"
            if outcome == "ok" or (result is not None and result.rejected):
                route.breaker.success(permit)
            else:
                route.breaker.failure(permit, slow=slow)
                self.kind = _kind(outcome, code)
            reported = True
            self.record(tier, outcome, reason, started, code)
            return result
        finally:
            if not reported:
                route.breaker.abandon(permit)

    async def exchange(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[Outcome, str, int | None, Any]:
        with anyio.move_on_after(timeout):
            try:
                answer = await self.client.post(url, content=body, headers=headers)
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

    def acknowledge(self) -> None:
        if self.acked or self.sender._ack is None or self.sender._tg is None:
            return
        self.acked = True
        last = self.attempts[-1].reason if self.attempts else ""
        reason = f"{self.kind}: {last}" if self.kind else last
        self.sender._tg.start_soon(self.sender._acknowledge, self.response, self.session, reason, self.config)

    def failover(self, source: int, target: int) -> None:
        self.sender._emit(
            "failover",
            self.response,
            self.session,
            tier=target,
            reason=self.attempts[-1].reason if self.attempts else None,
            fields={"from_tier": source, "to_tier": target, "kind": self.kind or "error"},
        )

    def skip(self, tier: int, reason: str, kind: str) -> None:
        self.kind = kind
        self.record(tier, "skipped", reason, time.perf_counter())

    def skip_open(self, tier: int, route: _Route) -> None:
        snap = route.breaker.snapshot()
        if snap.state == "half_open":
            self.skip(tier, "breaker half-open: a probe is in flight", "breaker_open")
            return
        wait_ms = max(0.0, ((snap.next_probe_at or 0.0) - self.clock()) * 1000)
        if snap.reason == "slow":
            why = f"tier 1 is slow ({snap.slow} answers over the {self.config.webhook_timeout_ms} ms budget)"
            self.skip(tier, f"{why}; next probe in {wait_ms:.0f} ms", "slow")
        else:
            why = f"breaker open after {snap.failures} failures"
            self.skip(tier, f"{why}; next probe in {wait_ms:.0f} ms", "breaker_open")

    def record(
        self, tier: int, outcome: Outcome, reason: str, started: float, code: int | None = None
    ) -> None:
        latency = (time.perf_counter() - started) * 1000
        self.attempts.append(Attempt(tier, outcome, reason, latency, code))
        self.sender._emit(
            "attempt",
            self.response,
            self.session,
            tier=tier,
            latency_ms=latency,
            reason=reason,
            level="debug" if outcome == "ok" else "info",
            fields={"outcome": outcome, "status_code": code},
        )


def _interpret(code: int, payload: Any, tier: int) -> tuple[_Result | None, Outcome, str]:
    """What a sidecar's answer means for the delivery."""
    status = payload.get("status") if isinstance(payload, dict) else None
    if code == 200 and status in ("delivered", "duplicate"):
        return _Result("delivered", tier), "ok", f"HTTP 200 {status}"
    if code == 202 and status == "queued":
        return _Result("queued", tier), "ok", "HTTP 202 queued"
    detail = payload.get("error") if isinstance(payload, dict) else payload
    reason = f"HTTP {code}: {detail}" if detail else f"HTTP {code}"
    if code in _PERMANENT and not _wrong_session(payload):
        return _Result("failed", None, rejected=reason), "error", reason
    if 200 <= code < 300:
        reason = f"HTTP {code} with an unexpected body: {str(payload)[:200]}"
    return None, "error", reason


def _wrong_session(payload: Any) -> bool:
    # A 422 about $.session means another session's server answers at this address (a reused port).
    errors = payload.get("errors") if isinstance(payload, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("path") == "$.session" for e in errors
    )


def _kind(outcome: Outcome, code: int | None) -> str:
    if outcome in ("timeout", "refused"):
        return outcome
    if code is not None and code >= 500:
        return "http_5xx"
    if code is not None and code >= 400:
        return "http_4xx"
    return "error"


def send_one(loaded: Loaded, response: Response, session: str, tier: TierChoice = "auto") -> Receipt:
    """Deliver one response with a sender of its own (``mcp-cascade send``).

    While it runs, the sender also re-drives outbox entries left by senders
    that died; whatever that pass has not finished stays for the next one.
    """
    from mcp_cascade.server import make_telemetry

    async def main() -> Receipt:
        telemetry = make_telemetry(loaded, "send", session)
        try:
            async with Sender(loaded.home, loaded.config, telemetry) as sender:
                return await sender.deliver(response, session, tier=tier)
        finally:
            telemetry.close()

    return anyio.run(main)
