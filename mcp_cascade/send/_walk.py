"""One response's walk through the tiers: the inside of ``Sender.deliver``.

Rounds of ``tier_order`` until a tier makes the response durable at the server or the overall
timeout passes. Every wait is bounded by what is left of the budget it belongs to, so nothing
here needs cancelling from outside: the receipt always lists every attempt, including the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from mcp_cascade.clock import Clock, Random
from mcp_cascade.config import Config
from mcp_cascade.events import Event, EventName, Observer
from mcp_cascade.queue import MaildirQueue, Queue
from mcp_cascade.response import Response
from mcp_cascade.send._http import Client
from mcp_cascade.send.breaker import Breaker, Permit
from mcp_cascade.send.receipt import Attempt, AttemptOutcome, Result, failure_kind, interpret
from mcp_cascade.send.retry import RetrySchedule
from mcp_cascade.sessions import SessionInfo, SessionPaths, read_session
from mcp_cascade.signing import Signer
from mcp_cascade.wire import Tier, TierChoice, webhook_request

if TYPE_CHECKING:  # the NATS client is imported only when nats_url is set
    from mcp_cascade.remote.route import RemoteRoute


@dataclass(frozen=True, slots=True)
class Means:
    """What a walk uses from its sender."""

    home: Path
    client: Client
    signer: Signer
    observer: Observer
    clock: Clock
    random: Random
    breaker: Callable[[str, SessionInfo | None, Config], Breaker]  # the session's, for this server
    acknowledge: Callable[[Response, str, str, Config], None]  # starts tier 2's acknowledgment
    remote: RemoteRoute | None = None  # set when nats_url is


class Walk:
    """One response's way through the tiers, under the configuration it started with."""

    def __init__(
        self,
        means: Means,
        config: Config,
        response: Response,
        session: str,
        choice: TierChoice,
        started: float,
        looked: tuple[SessionInfo | None] | None = None,
    ) -> None:
        self.means = means
        self.looked = looked  # the session file as read with the outbox write: the first round's look
        self.config = config
        self.response = response
        self.session = session
        self.choice = choice
        self.clock = means.clock.monotonic
        # The budget counts from the delivery's start (the outbox write came first).
        self.deadline = started + config.overall_timeout_ms / 1000
        self.webhook_s = config.webhook_timeout_ms / 1000
        self.attempts: list[Attempt] = []
        self.kind = ""  # why the last tier did not take the response (the failover reason)
        self.acked = False
        self.tier1_tried = False

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def plan(self) -> tuple[Tier, ...]:
        if self.choice == "file":
            return (Tier.FILE,)
        if self.choice == "webhook":
            return (Tier.WEBHOOK,)
        return tuple(Tier.from_key(name) for name in self.config.tier_order)

    async def run(self) -> Result:
        rounds = RetrySchedule(self.remaining(), clock=self.clock, random=self.means.random)
        while True:
            result = await self.round()
            if result is not None:
                return result
            delay = rounds.next_delay()
            if delay is None:
                return Result("failed", None)
            await self.means.clock.sleep(delay)
            if self.remaining() <= 0:
                return Result("failed", None)

    async def round(self) -> Result | None:
        if self.looked is not None:
            (info,), self.looked = self.looked, None
        else:
            info = await anyio.to_thread.run_sync(read_session, self.means.home, self.session)
        breaker = self.means.breaker(self.session, info, self.config)
        if self.means.remote is not None and self.choice == "auto" and (info is None or not info.alive):
            place, why = await self.means.remote.place(self.session)
            if place == "remote":
                return await self.tier4(self.means.remote, breaker, why)
        down = None
        if info is None:
            down = "session not running (no session.json)"
        elif not info.alive:
            down = f"session not running (pid {info.pid} is gone)"
        return await self.sequence(self.plan(), None, info, breaker, down)

    async def sequence(
        self,
        plan: tuple[Tier, ...],
        previous: Tier | None,
        info: SessionInfo | None,
        breaker: Breaker,
        down: str | None,
    ) -> Result | None:
        """Try ``plan`` in order, never waiting on a tier 1 that cannot help soon.

        Refused (nobody listens): the inbox at once, tier 2 only if it fails. Timed out
        (frozen or slow): the inbox now while tier 2 keeps trying; first acknowledgment
        wins (the session's dedup keeps a late twin to one push).
        """
        for index, tier in enumerate(plan):
            if previous is not None:
                self.failover(previous, tier)
            if tier == Tier.WEBHOOK:
                result = await self.tier1(info, breaker, down)
            elif tier == Tier.BRIDGE:
                result = await self.tier2(info, breaker, down, give_up_refused=Tier.FILE in plan[index + 1 :])
            else:
                result = await self.tier3(down)
            if result is not None:
                return result
            previous, rest = tier, plan[index + 1 :]
            if tier == Tier.WEBHOOK and Tier.FILE in rest and self.kind == "refused":
                if Tier.BRIDGE in rest:
                    self.acknowledge()  # the person hears back as if tier 2 had started
                inbox_first = (Tier.FILE, *(t for t in rest if t != Tier.FILE))
                return await self.sequence(inbox_first, Tier.WEBHOOK, info, breaker, down)
            if tier == Tier.WEBHOOK and Tier.FILE in rest and Tier.BRIDGE in rest and self.kind == "timeout":
                self.failover(Tier.WEBHOOK, Tier.BRIDGE)
                self.failover(Tier.WEBHOOK, Tier.FILE)
                return await self.race(info, breaker, down)
        return None

    async def race(self, info: SessionInfo | None, breaker: Breaker, down: str | None) -> Result | None:
        """Tier 2 and tier 3 together; the first to acknowledge wins and the other stops."""
        won: Result | None = None

        async def run(tier: Tier) -> None:
            nonlocal won
            try:
                result = await (self.tier2(info, breaker, down) if tier == Tier.BRIDGE else self.tier3(down))
            except anyio.get_cancelled_exc_class():
                self.record(tier, "skipped", f"stopped: tier {won.tier if won else '?'} answered first", now)
                raise
            if result is not None and won is None:
                won = result
                tg.cancel_scope.cancel()

        now = self.clock()
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, Tier.BRIDGE)
            tg.start_soon(run, Tier.FILE)
        return won

    async def tier1(self, info: SessionInfo | None, breaker: Breaker, down: str | None) -> Result | None:
        if down is not None or info is None:
            self.skip(Tier.WEBHOOK, down or "", "session_down")
            return None
        permit = breaker.allow()
        if permit == "reject":
            self.skip_open(Tier.WEBHOOK, breaker)
            return None
        self.tier1_tried = True
        timeout = min(self.webhook_s, self.remaining())
        return await self.post(info.webhook_url, breaker, Tier.WEBHOOK, permit, timeout)

    async def tier2(
        self, info: SessionInfo | None, breaker: Breaker, down: str | None, *, give_up_refused: bool = False
    ) -> Result | None:
        self.acknowledge()
        if down is not None or info is None:
            self.skip(Tier.BRIDGE, down or "", "session_down")
            return None
        budget = min(self.config.bridge_timeout_ms / 1000, self.remaining())
        schedule = RetrySchedule(
            budget, reserve_s=min(self.webhook_s, budget), clock=self.clock, random=self.means.random
        )
        wait = self.tier1_tried
        while True:
            if wait:
                delay = schedule.next_delay()
                if delay is None:
                    return None
                await self.means.clock.sleep(delay)
            wait = True
            permit = breaker.allow()
            if permit == "reject":
                self.skip_open(Tier.BRIDGE, breaker)
                return None
            timeout = min(self.webhook_s, schedule.remaining())
            if timeout <= 0:
                return None
            result = await self.post(info.webhook_url, breaker, Tier.BRIDGE, permit, timeout)
            if result is not None or (give_up_refused and self.kind == "refused"):
                return result

    async def tier3(self, down: str | None) -> Result | None:
        timeout = self.remaining()
        if timeout <= 0:
            return None
        queue: Queue = MaildirQueue(SessionPaths(self.means.home, self.session).inbox, self.session)
        started = self.clock()
        try:
            await queue.enqueue(self.response, timeout)
        except TimeoutError:
            self.record(Tier.FILE, "timeout", f"inbox write took over {timeout * 1000:.0f} ms", started)
            self.kind = "timeout"
            return None
        except OSError as exc:
            self.record(Tier.FILE, "error", f"inbox write failed: {exc}", started)
            self.kind = "error"
            return None
        self.record(Tier.FILE, "ok", "queued in the inbox" + (f"; {down}" if down else ""), started)
        return Result("queued", Tier.FILE)

    async def tier4(self, remote: RemoteRoute, breaker: Breaker, where: str) -> Result | None:
        """Publish to the session's JetStream subject: the PubAck is 'queued', its receipt 'delivered'."""
        permit = breaker.allow()
        if permit == "reject":
            self.skip_open(Tier.NATS, breaker)
            return None
        timeout = min(self.config.bridge_timeout_ms / 1000, self.remaining())
        started = self.clock()
        remote.expect(self.response.id)
        try:
            queue: Queue = remote.queue(self.session)
            stored = await queue.enqueue(self.response, timeout)
        except (TimeoutError, ConnectionError) as exc:
            await remote.receipt(self.response.id, 0)
            slow = isinstance(exc, TimeoutError)
            breaker.failure(permit, slow=slow)
            self.kind = "timeout" if slow else "refused"
            self.record(Tier.NATS, "timeout" if slow else "refused", f"{exc}; {where}", started)
            return None
        breaker.success(permit)
        status = await remote.receipt(self.response.id, min(self.webhook_s, self.remaining()))
        said = "delivered (the session's receipt)" if status == "delivered" else "no receipt yet"
        self.record(Tier.NATS, "ok", f"PubAck: {stored}, {said}; {where}", started)
        return Result("delivered" if status == "delivered" else "queued", Tier.NATS)

    async def post(
        self, url: str, breaker: Breaker, tier: Tier, permit: Permit, timeout: float
    ) -> Result | None:
        body, headers = webhook_request(self.means.signer, self.response, tier)
        started = self.clock()
        reported = False
        try:
            answer, reason, code, payload = await self.means.client.exchange(url, body, headers, timeout)
            outcome: AttemptOutcome = answer
            result: Result | None = None
            if outcome == "ok" and code is not None:
                result, outcome, reason = interpret(code, payload, tier)
            slow = outcome == "timeout"
            if outcome == "ok" or (result is not None and result.rejected):
                breaker.success(permit)
            else:
                breaker.failure(permit, slow=slow)
                self.kind = failure_kind(outcome, code)
            reported = True
            self.record(tier, outcome, reason, started, code)
            return result
        finally:
            if not reported:
                breaker.abandon(permit)

    def acknowledge(self) -> None:
        if self.acked:
            return
        self.acked = True
        last = self.attempts[-1].reason if self.attempts else ""
        reason = f"{self.kind}: {last}" if self.kind else last
        self.means.acknowledge(self.response, self.session, reason, self.config)

    def failover(self, source: Tier, target: Tier) -> None:
        self.emit(
            "failover",
            tier=target,
            reason=self.attempts[-1].reason if self.attempts else None,
            fields={"from_tier": source, "to_tier": target, "kind": self.kind or "error"},
        )

    def emit(self, name: EventName, **kw: Any) -> None:
        self.means.observer.emit(
            Event(
                name,
                response_id=self.response.id,
                correlation_id=self.response.correlation_id,
                session=self.session,
                **kw,
            )
        )

    def skip(self, tier: Tier, reason: str, kind: str) -> None:
        self.kind = kind
        self.record(tier, "skipped", reason, self.clock())

    def skip_open(self, tier: Tier, breaker: Breaker) -> None:
        snap = breaker.snapshot()
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
        self, tier: Tier, outcome: AttemptOutcome, reason: str, started: float, code: int | None = None
    ) -> None:
        latency = (self.clock() - started) * 1000
        self.attempts.append(Attempt(tier, outcome, reason, latency, code))
        self.emit(
            "attempt",
            tier=tier,
            latency_ms=latency,
            reason=reason,
            level="debug" if outcome == "ok" else "info",
            fields={"outcome": outcome, "status_code": code},
        )
