"""``mcp-cascade bridge``: the pieces composed, in one event loop.

Start-up: take the locks (one bridge per home and per token), check the token
with Telegram, open the outbox and the ledger, start the sending cascade, bind
the local API and publish ``bridge/bridge.json``; then poll, process, and watch
for new pairings until SIGTERM/SIGINT. ``bridge.json`` and the locks go away on
exit; after a SIGKILL the next bridge simply takes over (flocks die with their
process, and the outbox resumes where it stopped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from mcp_cascade.asgi import HttpLimits, bind_socket, serve_asgi
from mcp_cascade.bridge.access import Access
from mcp_cascade.bridge.api import ApiDeps, build_app
from mcp_cascade.bridge.flood import FloodLimits, Scheduler
from mcp_cascade.bridge.inbound import POLL_TIMEOUT_S, Inbound
from mcp_cascade.bridge.instance import (
    acquire,
    fingerprint,
    publish,
    unpublish,
)
from mcp_cascade.bridge.ledger import Ledger
from mcp_cascade.bridge.outbox import OUTBOX_DB, UpdateOutbox
from mcp_cascade.bridge.prompts import Prompts
from mcp_cascade.bridge.receipts import Receipts, Stage
from mcp_cascade.bridge.routing import Router
from mcp_cascade.bridge.telegram import TelegramClient, TelegramUnavailable
from mcp_cascade.bridge.topics import Topics
from mcp_cascade.capture import capture_into
from mcp_cascade.config import Config, Loaded
from mcp_cascade.events import Event
from mcp_cascade.home import ensure_home, warn_tightened
from mcp_cascade.live_config import LiveConfig
from mcp_cascade.ops.health import BridgeFacts, bridge_problems, overall_status, tier_status
from mcp_cascade.ops.telemetry import Telemetry, make_telemetry
from mcp_cascade.redact import keep_secret
from mcp_cascade.send.cascade import Sender
from mcp_cascade.signals import until_terminated
from mcp_cascade.signing import Signer, load_or_create_secret

BRIDGE_DIR = Path("bridge")
_MONITOR_S = 1.0


@dataclass
class _State:
    started: float = field(default_factory=time.time)
    depth: int = 0
    oldest: float | None = None
    api_url: str = ""


class Bridge:
    """One running bridge; :meth:`run` until SIGTERM/SIGINT (or a rejected token).

    The constructor only records what to run. :meth:`running` is the lifespan:
    telemetry, the secret, the locks, the API socket, outbox and ledger, the
    Telegram client, the sender, the API and the background tasks, opened in
    order on one exit stack and closed in reverse whatever stops it.
    """

    telemetry: Telemetry
    live: LiveConfig
    signer: Signer

    def __init__(self, loaded: Loaded, env: Mapping[str, str], token: str) -> None:
        self.loaded = loaded
        self.home = loaded.home
        self.config = loaded.config
        self.env = env
        self.token = token
        self.fingerprint = fingerprint(self.token)
        keep_secret(self.token)
        self.state = _State()

    def _health(self, telegram: TelegramClient, sender: Sender, part: str | None) -> Mapping[str, Any]:
        """DESIGN 5 health of the bridge; the status follows :mod:`mcp_cascade.ops.health`."""
        now = time.time()
        reach = telegram.reachability()
        breakers = {name: _plain(snap) for name, snap in sender.breakers().items()}
        tripped = {
            name: (str(b["state"]), b.get("next_probe_at"))
            for name, b in breakers.items()
            if b.get("state") not in (None, "closed")
        }
        oldest = round(now - self.state.oldest, 3) if self.state.oldest else 0.0
        timeout_s = self.live.current.overall_timeout_ms / 1000
        problems = bridge_problems(
            BridgeFacts(
                telegram_ok_age_s=reach["last_ok_age_s"],
                telegram_failures=reach["consecutive_failures"],
                telegram_error=reach["last_error"],
                stale_after_s=3 * POLL_TIMEOUT_S + 15,
                breakers=tripped,
                oldest_pending_age_s=oldest,
                overall_timeout_s=timeout_s,
            ),
            now,
        )
        status = tier_status(problems)
        tier = {
            "status": status,
            "problems": [p.text for p in problems],
            "telegram": reach,
            "breakers": breakers,
            "open_breakers": sorted(tripped),
            "outbox_depth": self.state.depth,
            "oldest_pending_age_s": oldest,
            "latency_ms": self.telemetry.recent.summary(),  # the last deliveries, per tier that carried them
        }
        if part == "bridge":
            return tier
        return {
            "status": overall_status(
                {"bridge": status}, oldest_pending_age_s=oldest, overall_timeout_s=timeout_s
            ),
            "component": "bridge",
            "bot": "@" + telegram.username if telegram.username else None,
            "token_fingerprint": self.fingerprint,
            "api_url": self.state.api_url,
            "tiers": {"bridge": tier},
            "queue_depth": self.state.depth,
            "oldest_pending_age_s": oldest,
            "uptime_s": round(time.time() - self.state.started, 3),
        }

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TaskGroup]:
        """Open every component, start the background tasks, yield their task group; close in reverse."""
        async with contextlib.AsyncExitStack() as stack:
            tightened = ensure_home(self.home)
            (self.home / BRIDGE_DIR).mkdir(mode=0o700, exist_ok=True)
            self.live = LiveConfig.from_loaded(self.loaded)
            self.config = self.live.current
            self.telemetry = self.observer = make_telemetry(self.loaded, "bridge")
            stack.callback(self.telemetry.close)
            warn_tightened(self.observer, self.home, tightened)
            # httpx logs each request URL at INFO, and the Bot API URL holds the token: WARNING and up
            # only, into the JSON log, which scrubs every secret (mcp_cascade.redact).
            capture_into(self.observer)
            self.live.on_hangup(self.telemetry.reopen_log)
            self.signer = Signer(load_or_create_secret(self.home))
            lock = acquire(self.home, self.token, self.env)
            stack.callback(self.observer.emit, Event("stopped"))  # after the locks are free
            stack.callback(lock.release)
            sock = stack.enter_context(bind_socket("127.0.0.1", self.config.bridge_port, key="bridge_port"))
            outbox = stack.enter_context(UpdateOutbox.open(self.home / OUTBOX_DB))
            ledger = stack.enter_context(Ledger.open(self.home / BRIDGE_DIR / "ledger.db"))
            stack.callback(unpublish, self.home)
            access = Access(self.home, lambda: self.live.current)
            scheduler = Scheduler(flood_limits(self.config))
            telegram = await stack.enter_async_context(
                TelegramClient(self.token, self.config.telegram_api_base, self.observer, scheduler=scheduler)
            )
            await telegram.start(deadline_s=float("inf"))
            self.observer.emit(
                Event("telegram_ready", fields={"bot": telegram.username, "token": self.fingerprint})
            )
            topics = Topics(telegram, ledger, self.home, self.observer)
            outbound = Prompts(telegram, ledger, access, self.observer, topics, self.home)
            sender = await stack.enter_async_context(
                Sender(self.home, self.live, self.observer, ack=outbound.ack)
            )
            receipts = Receipts(telegram, self._emoji, self.observer)
            inbound = Inbound(
                telegram=telegram,
                outbox=outbox,
                ledger=ledger,
                router=Router(self.home, ledger, access, sender.remote_sessions),
                sender=sender,
                observer=self.observer,
                receipts=receipts,
                file_limit=lambda: self.live.current.file_max_bytes,
            )
            deps = ApiDeps(
                outbound,
                self.signer,
                self.observer,
                lambda part: self._health(telegram, sender, part),
                self.telemetry.metrics.render if self.telemetry.metrics else None,
            )
            # Prompt sends outlive the API call that asked for them; cut short at stop (resent at start).
            sends = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(sends.cancel_scope.cancel)
            outbound.sends_in(sends)
            started = time.time()
            await stack.enter_async_context(self._http(sock, deps))
            tg = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(outbound.resend, started)
            tg.start_soon(inbound.poll)
            tg.start_soon(inbound.process)
            tg.start_soon(receipts.run)
            tg.start_soon(self._monitor, outbox, ledger, access, telegram, sender)
            tg.start_soon(self._keep_topics, topics)
            yield tg

    async def run(self) -> None:
        """Serve until a stop signal; always unpublish and release the locks."""
        async with self.running() as tg:
            await self._until_signal()
            tg.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def _http(self, sock: Any, deps: ApiDeps) -> AsyncIterator[None]:
        host, port = sock.getsockname()[:2]
        # Nothing an API call started is lost by cutting it short (its caller gets an error).
        async with serve_asgi(build_app(deps), sock, limits=HttpLimits.of(self.live.current)):
            self.state.api_url = f"http://{host}:{port}"
            publish(self.home, self.state.api_url)
            self.observer.emit(Event("bridge_listening", fields={"api_url": self.state.api_url}))
            try:
                yield
            finally:
                unpublish(self.home)

    async def _keep_topics(self, topics: Topics) -> None:
        while True:
            try:
                await topics.sync()
            except Exception as exc:  # task boundary: a broken topic must not stop the bridge
                self.observer.emit(Event("topic_failed", level="error", reason=repr(exc)))
            await anyio.sleep(_MONITOR_S)

    async def _monitor(
        self, outbox: UpdateOutbox, ledger: Ledger, access: Access, telegram: TelegramClient, sender: Sender
    ) -> None:
        last_purge = 0.0
        while True:
            telegram.scheduler.configure(flood_limits(self.live.current))
            self.state.depth = await anyio.to_thread.run_sync(outbox.depth)
            self.state.oldest = await anyio.to_thread.run_sync(outbox.oldest_pending)
            age = time.time() - self.state.oldest if self.state.oldest else 0.0
            self.observer.emit(
                Event("queue_state", level="debug", fields={"depth": self.state.depth, "oldest_age_s": age})
            )
            up = self._health(telegram, sender, "bridge")["status"] != "down"
            self.observer.emit(Event("tier_state", tier=2, level="debug", fields={"up": up}))
            for paired in await anyio.to_thread.run_sync(access.take_paired):
                await anyio.to_thread.run_sync(ledger.seen, paired.chat_id)
                self.observer.emit(Event("paired", fields={"user_id": paired.user_id}))
                with contextlib.suppress(TelegramUnavailable):
                    await telegram.send(
                        paired.chat_id, "Paired. Your answers now reach your Claude Code sessions. /help"
                    )
            if time.time() - last_purge > 3600:
                last_purge = time.time()
                keep_s = self.live.current.retention_days * 86400.0
                updates = await anyio.to_thread.run_sync(outbox.purge, keep_s)
                prompts, messages = await anyio.to_thread.run_sync(ledger.purge, keep_s)
                if updates or prompts or messages:
                    self.observer.emit(
                        Event(
                            "purged",
                            fields={"updates": updates, "prompts": prompts, "messages": messages},
                        )
                    )
            await anyio.sleep(_MONITOR_S)

    def _emoji(self, stage: Stage) -> str:
        config = self.live.current
        return {
            "accepted": config.receipt_accepted,
            "delivered": config.receipt_delivered,
            "waiting": config.receipt_waiting,
        }[stage]

    async def _until_signal(self) -> None:
        await until_terminated(lambda name: self.observer.emit(Event("signal", reason=name)))


def flood_limits(config: Config) -> FloodLimits:
    """The flood limits a configuration sets."""
    return FloodLimits(
        chat_per_s=config.flood_chat_per_s,
        group_per_min=config.flood_group_per_min,
        global_per_s=config.flood_global_per_s,
        burst=config.flood_burst,
    )


def _plain(snapshot: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(snapshot) and not isinstance(snapshot, type):
        return dataclasses.asdict(snapshot)
    return dict(snapshot) if isinstance(snapshot, Mapping) else {"state": str(snapshot)}


def run_bridge(loaded: Loaded, env: Mapping[str, str], token: str) -> int:
    """Run the bridge to completion; returns the exit code."""
    bridge = Bridge(loaded, env, token)
    anyio.run(bridge.run)
    return 0
