"""``mcp-cascade serve``: one Claude Code session's MCP server, sidecar and inbox, in one event loop.

Start-up order matters: session.json is published once every tier it advertises is up (sidecar,
inbox watcher, NATS presence) and before the MCP client initializes, so a bridge can deliver (202,
queued) while Claude Code is still starting; pending ones are pushed on ``notifications/initialized``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from mcp_cascade.asgi import HttpLimits, bind_socket, serve_asgi
from mcp_cascade.capture import capture_into
from mcp_cascade.config import Loaded, is_loopback
from mcp_cascade.durable import dir_writable
from mcp_cascade.events import Event
from mcp_cascade.home import ensure_home, warn_tightened
from mcp_cascade.inbox import Maildir
from mcp_cascade.live_config import LiveConfig
from mcp_cascade.ops.health import (
    LastError,
    WebhookFacts,
    error_json,
    latest_error,
    overall_status,
    tier_status,
    webhook_problems,
)
from mcp_cascade.ops.telemetry import Telemetry, make_telemetry
from mcp_cascade.receive.channel import ChannelDeps, run_channel
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.holder import Hold, hold
from mcp_cascade.receive.outbound import BridgeClient, allowed_users
from mcp_cascade.receive.selftest import run_selftest
from mcp_cascade.receive.sidecar import SidecarDeps, build_app
from mcp_cascade.receive.stdio import protocol_stdio
from mcp_cascade.receive.store import Store
from mcp_cascade.receive.watch import InboxWatcher
from mcp_cascade.response import now_rfc3339
from mcp_cascade.sessions import SessionPaths, publish_session
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.wire import WEBHOOK_PATH

if TYPE_CHECKING:  # the NATS client is imported only when nats_url is set
    from mcp_cascade.remote.node import RemoteSession


@dataclass
class ServeState:
    """Live facts for health and status, refreshed by the monitor task."""

    started: float = field(default_factory=time.time)
    counts: Mapping[str, int] = field(default_factory=dict)
    oldest_pending: float | None = None
    webhook_url: str = ""
    health_url: str = ""

    @property
    def queue_depth(self) -> int:
        """Responses durable but not yet delivered (pending, or caught mid-push)."""
        return sum(n for state, n in self.counts.items() if state != "delivered")

    def oldest_pending_age_s(self, now: float) -> float:
        """Age of the oldest undelivered response, 0 when there is none."""
        return max(0.0, now - self.oldest_pending) if self.oldest_pending else 0.0


class Serve:
    """Everything one session runs; :meth:`run` until stdin closes or SIGTERM.

    The constructor only records what to run. :meth:`running` is the lifespan:
    it opens each component in order (telemetry, secret, store, the sidecar's
    socket, engine, sidecar, inbox watcher, NATS presence, background tasks),
    each one owning what it opened, and closes them in reverse whatever stops it.
    """

    telemetry: Telemetry
    signer: Signer
    bridge: BridgeClient
    store: Store
    engine: Engine
    watcher: InboxWatcher
    remote: RemoteSession | None
    live: LiveConfig

    def __init__(
        self, loaded: Loaded, held: Hold, *, cwd: Path, label: str, tightened: list[str] | None = None
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.home = loaded.home
        self.held = held
        self.session = held.session
        self.cwd = cwd
        self.label = label
        self.paths = SessionPaths(self.home, self.session)
        self.state = ServeState()
        self._base_url = ""  # the sidecar's, once it listens
        self._tightened = tightened or []

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TaskGroup]:
        """Open every component, start the background tasks, yield their task group; close in reverse."""
        cfg, session = self.config, self.session
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.held.release)  # last of all: the session is free again
            tightened = self._tightened + ensure_home(self.home)
            self.paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.telemetry = make_telemetry(self.loaded, "serve", session)
            stack.callback(self.telemetry.close)
            opened = False  # "stopped" follows a start only: a failed start is the one line of its error

            def stopped() -> None:
                if opened:
                    self.telemetry.emit(Event("stopped", session=session))

            stack.callback(stopped)
            warn_tightened(self.telemetry, self.home, tightened)
            capture_into(self.telemetry)
            self.signer = Signer(load_or_create_secret(self.home))
            self.bridge = BridgeClient(self.home, self.signer)
            self.store = stack.enter_context(Store.open(self.paths.state_db))
            # Only the holder writes and removes session.json, and it still holds the session here.
            stack.callback(self.paths.session_json.unlink, missing_ok=True)
            stack.callback(self.held.closing)
            # Bound before any task group exists, so a taken port is a plain ConfigError.
            sock = stack.enter_context(bind_socket(cfg.sidecar_host, cfg.sidecar_port))
            opened = True
            self.engine = Engine(self.store, session, self.telemetry)
            self.watcher = InboxWatcher(
                Maildir(self.paths.inbox, session, settle_s=cfg.file_debounce_ms / 1000),
                self.engine,
                self.telemetry,
                rescan_s=cfg.file_rescan_ms / 1000,
                legacy_dir=cfg.legacy_dir.expanduser() if cfg.legacy_dir else None,
                debounce_s=cfg.file_debounce_ms / 1000,
                legacy_max_age_s=cfg.retention_days * 86400,
                watcher=cfg.watcher,
            )
            # Reloaded on SIGHUP or a config.toml change; the watcher takes its periods from the next tick.
            self.live = LiveConfig.from_loaded(self.loaded, observer=self.telemetry)
            self.live.on_hangup(self.telemetry.reopen_log)
            self.live.subscribe(
                lambda c: self.watcher.retune(
                    rescan_s=c.file_rescan_ms / 1000, debounce_s=c.file_debounce_ms / 1000
                )
            )
            self.remote = None
            if cfg.nats_url:
                from mcp_cascade.remote.node import RemoteSession

                self.remote = RemoteSession(
                    cfg, self.home, session, self.cwd, self.engine, self.signer, self.telemetry
                )
            await stack.enter_async_context(self.engine.running())
            await stack.enter_async_context(self._sidecar(sock))
            await stack.enter_async_context(self.watcher.running())
            if self.remote is not None:
                await stack.enter_async_context(self.remote.running())
            tg = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(self._monitor)
            tg.start_soon(self._retention)
            await tg.start(self.live.watch, self.telemetry)  # SIGHUP and config.toml changes
            tg.start_soon(self._stop_on_signal, tg.cancel_scope)
            # Published last: whoever reads session.json (a sender, health, inspect) finds every tier up.
            self._publish()
            yield tg

    def health(self, tier: str | None = None) -> Mapping[str, Any]:
        """DESIGN 5 health: overall, or one tier's (the rule is :mod:`mcp_cascade.ops.health`)."""
        now = time.time()
        depth = self.state.queue_depth
        recent = self.telemetry.recent.summary()
        errors = self.telemetry.last_errors
        push_error = self.engine.last_push_error
        webhook_errors = [errors.get(k) for k in ("1", "2", "")]
        if push_error is not None:
            webhook_errors.append(LastError(*push_error))
        webhook_facts = WebhookFacts(
            listening=bool(self.state.webhook_url),
            store_writable=dir_writable(self.paths.dir),
            client_attached=self.engine.attached,
            queue_depth=depth,
            last_error=latest_error(webhook_errors),
        )
        webhook_found = webhook_problems(webhook_facts, now)
        tiers: dict[str, dict[str, Any]] = {
            "webhook": {
                "status": tier_status(webhook_found),
                "problems": [p.text for p in webhook_found],
                "url": self.state.webhook_url,
                "client_attached": webhook_facts.client_attached,
                "store_writable": webhook_facts.store_writable,
                "last_error": error_json(webhook_facts.last_error),
                "latency_ms": {t: recent[t] for t in ("1", "2") if t in recent},
            },
            "file": {
                "inbox": str(self.paths.inbox),
                **self.watcher.health(),
                "last_error": error_json(errors.get("3")),
                "latency_ms": {t: recent[t] for t in ("3",) if t in recent},
            },
        }
        if self.remote is not None:
            tiers["nats"] = self.remote.health()
        if tier is not None:
            return tiers[tier]
        age = self.state.oldest_pending_age_s(now)
        return {
            "status": overall_status(
                {name: body["status"] for name, body in tiers.items()},
                oldest_pending_age_s=age,
                overall_timeout_s=self.live.current.overall_timeout_ms / 1000,
            ),
            "session_id": self.session,
            "pid": os.getpid(),
            "tiers": tiers,
            "bridge": self.bridge.check(),  # whether questions may go to it, and why not
            "queue_depth": depth,
            "oldest_pending_age_s": round(age, 3),
            "uptime_s": round(now - self.state.started, 3),
        }

    def refresh(self) -> None:
        """Re-read the queue from the store and publish the gauges (blocking: call it off the event loop)."""
        self.state.counts = self.store.counts()
        self.state.oldest_pending = self.store.oldest_pending()
        self.telemetry.emit(
            Event(
                "queue_state",
                session=self.session,
                level="debug",
                fields={
                    "depth": self.state.queue_depth,
                    "oldest_age_s": self.state.oldest_pending_age_s(time.time()),
                },
            )
        )
        health = self.health()
        for tier, name in ((1, "webhook"), (2, "webhook"), (3, "file")):
            up = health["tiers"][name]["status"] != "down"
            self.telemetry.emit(
                Event("tier_state", tier=tier, session=self.session, level="debug", fields={"up": up})
            )

    def fresh_health(self, tier: str | None = None) -> Mapping[str, Any]:
        """:meth:`health` after re-reading the queue (blocking: the sidecar and tools run it off the loop)."""
        self.refresh()
        return self.health(tier)

    def scrape(self) -> bytes:
        """Fresh gauges, then the Prometheus text (blocking: the sidecar runs it in a worker thread)."""
        assert self.telemetry.metrics is not None
        self.refresh()
        return self.telemetry.metrics.render()

    async def selftest(self) -> Mapping[str, Any]:
        """A synthetic response through each tier of this session, with per-tier latency."""
        report = await run_selftest(
            self.home,
            self.session,
            self.state.webhook_url,
            self.signer,
            rescan_ms=self.live.current.file_rescan_ms,
        )
        return report.to_dict()

    async def _monitor(self) -> None:
        logged = False  # a refresh that fails (EMFILE, a busy store) is logged once per streak
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh)
                logged = False
            except Exception as exc:  # the gauges wait for the next second; serve must not end for them
                if not logged:
                    self.telemetry.emit(Event("monitor_error", level="error", reason=repr(exc)))
                logged = True
            await anyio.sleep(1.0)

    async def _retention(self) -> None:
        """Forget delivered ids older than ``retention_days`` (at least 7), hourly."""
        while True:
            keep_s = self.live.current.retention_days * 86400
            purged = await anyio.to_thread.run_sync(self.store.purge, keep_s)
            if purged:
                self.telemetry.emit(Event("purged", session=self.session, fields={"responses": purged}))
            await anyio.sleep(3600)

    def _listening(self, host: str, port: int) -> None:
        self._base_url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        self.state.webhook_url = self._base_url + WEBHOOK_PATH
        self.state.health_url = self._base_url + "/health"

    def _publish(self) -> None:
        started = self.held.about.get("started_at") or now_rfc3339()
        publish_session(
            self.paths, base_url=self._base_url, started_at=started, cwd=self.cwd, label=self.label
        )

    @contextlib.asynccontextmanager
    async def _sidecar(self, sock: socket.socket) -> AsyncIterator[None]:
        host, port = sock.getsockname()[:2]
        metrics = self.telemetry.metrics
        app = build_app(
            SidecarDeps(
                self.engine,
                self.signer,
                self.session,
                self.telemetry,
                self.fresh_health,
                self.scrape if metrics else None,
                legacy_unsigned=lambda: self.live.current.legacy_webhook_unsigned,
                public=not is_loopback(host),
            )
        )
        # Stopped at once on exit: Claude Code allows a stopping server about 100 ms before it
        # escalates, and uvicorn's own shutdown polls every 100 ms.
        async with serve_asgi(app, sock, limits=HttpLimits.of(self.live.current)):
            self._listening(host, port)
            if not is_loopback(host):
                self.telemetry.emit(
                    Event(
                        "listening_beyond_loopback",
                        session=self.session,
                        level="warning",
                        reason=f"the sidecar listens on {host}:{port} (listen_beyond_loopback = true): "
                        "other machines can reach its webhook (signed answers only, plain HTTP), "
                        "health (statuses only) and metrics",
                    )
                )
            self.telemetry.emit(
                Event(
                    "sidecar_listening", session=self.session, fields={"webhook_url": self.state.webhook_url}
                )
            )
            yield

    async def _mcp(self) -> None:
        stdin, stdout = protocol_stdio()
        deps = ChannelDeps(
            engine=self.engine,
            session=self.session,
            outbound=self.bridge,
            status=self.fresh_health,
            selftest=self.selftest,
            permission_relay=bool(allowed_users(self.home, self.config)),
            frames=stdout,
        )
        await run_channel(deps, stdin, self._refused)

    def _refused(self, method: str) -> None:
        # Claude Code probes with server/discover first; seeing this line means it fell back to initialize.
        self.telemetry.emit(
            Event(
                "handshake_fallback",
                session=self.session,
                reason=f"refused {method} before initialize so the client uses the initialize handshake",
                fields={"method": method},
            )
        )

    async def run(self) -> None:
        """Serve until stdin closes or SIGTERM/SIGINT; always remove session.json."""
        async with self.running() as tg:
            await self._mcp()
            self.held.closing()  # a reconnecting serve may start taking over now
            self.telemetry.emit(Event("client_closed", session=self.session, reason="stdin closed"))
            tg.cancel_scope.cancel()

    async def _stop_on_signal(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.held.closing()
                self.telemetry.emit(Event("signal", session=self.session, reason=signal.Signals(signum).name))
                scope.cancel()
                return


def serve(loaded: Loaded, session: str, cwd: Path, *, explicit: bool) -> int:
    """Hold the session (or the next free one for a second window), then run serve to completion."""
    tightened = ensure_home(loaded.home)
    about = {"cwd": str(cwd), "started_at": now_rfc3339()}
    wait_s = loaded.config.session_wait_ms / 1000
    held = hold(loaded.home, session, explicit=explicit, wait_s=wait_s, about=about)
    window = "" if held.session == session else " #" + held.session.rsplit("-", 1)[1]
    app = Serve(loaded, held, cwd=cwd, label=cwd.name + window, tightened=tightened)
    anyio.run(app.run)  # the lifespan releases the session, whatever stops it
    return 0
