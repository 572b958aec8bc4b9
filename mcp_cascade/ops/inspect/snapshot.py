"""What ``inspect status`` and ``inspect watch`` show: every session and the bridge, as they are now.

Discovery is the home's files (``sessions/*/session.json``, ``bridge/bridge.json``);
live facts come from each process's ``/health`` and ``/metrics`` over HTTP. A
session whose process is gone is reported as such, with what its store still
holds for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx

from mcp_cascade.durable import pid_alive, read_json
from mcp_cascade.errors import StoreUnavailable
from mcp_cascade.ops.scrape import Scrape, fetch
from mcp_cascade.receive.outbound import BRIDGE_JSON
from mcp_cascade.receive.store import Store
from mcp_cascade.sessions import SessionInfo, SessionPaths, list_sessions
from mcp_cascade.wire import TIER_LABELS

Liveness = Literal["live", "unreachable", "dead", "stopped", "absent", "remote"]
_HTTP_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Latency:
    """Delivery latency of one tier: median and 99th percentile in milliseconds over ``n`` deliveries."""

    n: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class BreakerView:
    """The bridge's circuit breaker towards one session."""

    state: str
    next_probe_at: float | None = None


@dataclass(frozen=True, slots=True)
class SessionView:
    """One session directory under the home."""

    session: str
    liveness: Liveness
    detail: str
    pid: int | None = None
    label: str = ""
    folder: str = ""  # the project folder and start time tell two windows of one folder apart
    started_at: str = ""
    status: str | None = None  # ok / degraded / down, from its /health
    tiers: Mapping[str, str] = field(default_factory=dict)  # webhook/file → status
    problems: tuple[str, ...] = ()
    queue_depth: int | None = None
    oldest_pending_age_s: float | None = None
    latency: Mapping[str, Latency] = field(default_factory=dict)
    outcomes: Mapping[str, float] = field(default_factory=dict)  # delivered/duplicate/... summed over tiers
    breaker: BreakerView | None = None
    health: Mapping[str, Any] | None = None
    watcher: str = ""  # the inbox watcher's backend and why it was chosen
    host: str = ""  # set for a session of another host (from the NATS registry)


@dataclass(frozen=True, slots=True)
class FailoverView:
    """A non-zero failover counter of the bridge."""

    from_tier: str
    to_tier: str
    reason: str
    count: float


@dataclass(frozen=True, slots=True)
class BridgeView:
    """The bridge of this home."""

    liveness: Liveness
    detail: str
    pid: int | None = None
    status: str | None = None
    problems: tuple[str, ...] = ()
    latency: Mapping[str, Latency] = field(default_factory=dict)
    outcomes: Mapping[str, float] = field(default_factory=dict)
    failovers: tuple[FailoverView, ...] = ()
    breakers: Mapping[str, BreakerView] = field(default_factory=dict)
    health: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything ``inspect status`` reports."""

    home: str
    taken_at: float
    sessions: tuple[SessionView, ...]
    bridge: BridgeView

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return asdict(self)


async def take_snapshot(home: Path) -> Snapshot:
    """Read every session and the bridge of ``home``, concurrently."""
    entries = list_sessions(home)
    sessions: list[SessionView | None] = [None] * len(entries)
    bridge: list[BridgeView] = []
    async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S) as client, anyio.create_task_group() as tg:

        async def one(index: int, name: str, info: SessionInfo | None) -> None:
            sessions[index] = await _session(client, home, name, info)

        async def the_bridge() -> None:
            bridge.append(await _bridge(client, home))

        for index, (name, info) in enumerate(entries):
            tg.start_soon(one, index, name, info)
        tg.start_soon(the_bridge)
    views = tuple(s for s in sessions if s is not None)
    breakers = bridge[0].breakers
    views = tuple(replace(v, breaker=breakers[v.session]) if v.session in breakers else v for v in views)
    return Snapshot(str(home), time.time(), views, bridge[0])


async def _session(client: httpx.AsyncClient, home: Path, name: str, info: SessionInfo | None) -> SessionView:
    if info is None:
        return await _offline(home, name, "stopped", "not running (no session.json)", None)
    if not pid_alive(info.pid):
        return await _offline(
            home, name, "dead", f"pid {info.pid} is gone; its session.json was left behind", info.pid
        )
    base = info.health_url.rsplit("/health", 1)[0]
    try:
        answer = await client.get(info.health_url)
        health = answer.json()
        metrics = await fetch(client, base + "/metrics")
    except (httpx.HTTPError, ValueError) as exc:
        view = await _offline(home, name, "unreachable", f"pid {info.pid} does not answer: {exc!r}", info.pid)
        return replace(view, label=info.label, folder=info.cwd, started_at=info.started_at)
    tiers = health.get("tiers", {}) if isinstance(health, dict) else {}
    latency: dict[str, Latency] = {}
    for tier in tiers.values():
        for number, figures in (tier.get("latency_ms") or {}).items():
            latency[number] = Latency(int(figures["n"]), figures["p50_ms"], figures["p99_ms"])
    return SessionView(
        session=name,
        liveness="live",
        detail=f"pid {info.pid}, {info.webhook_url}",
        pid=info.pid,
        label=info.label,
        folder=info.cwd,
        started_at=info.started_at,
        status=health.get("status"),
        tiers={tier_name: str(tier.get("status")) for tier_name, tier in tiers.items()},
        problems=_problems(health),
        queue_depth=health.get("queue_depth"),
        oldest_pending_age_s=health.get("oldest_pending_age_s"),
        latency=latency,
        outcomes=_outcomes(metrics),
        health=health,
        watcher=_watcher(tiers.get("file")),
    )


def _watcher(file_tier: Any) -> str:
    if not isinstance(file_tier, dict) or not file_tier.get("watcher"):
        return ""
    return f"{file_tier['watcher']} ({file_tier.get('watcher_reason') or 'no reason given'})"


async def _offline(home: Path, name: str, liveness: Liveness, detail: str, pid: int | None) -> SessionView:
    """A session with no process to ask: what its store still holds."""

    def read() -> tuple[int, float | None] | None:
        try:
            store = Store.open_readonly(SessionPaths(home, name).state_db)
        except StoreUnavailable:
            return None
        try:
            counts = store.counts()
            oldest = store.oldest_pending()
        finally:
            store.close()
        return sum(n for state, n in counts.items() if state != "delivered"), oldest

    found = await anyio.to_thread.run_sync(read)
    depth, oldest = found if found is not None else (None, None)
    age = round(time.time() - oldest, 3) if oldest is not None else (0.0 if depth is not None else None)
    return SessionView(name, liveness, detail, pid, queue_depth=depth, oldest_pending_age_s=age)


async def _bridge(client: httpx.AsyncClient, home: Path) -> BridgeView:
    info = read_json(home / BRIDGE_JSON)
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return BridgeView("absent", "no bridge has run here (no bridge/bridge.json)")
    pid = int(info["pid"])
    if not pid_alive(pid):
        return BridgeView("dead", f"pid {pid} is gone; its bridge.json was left behind", pid)
    health_url = str(info.get("health_url", ""))
    base = health_url.rsplit("/health", 1)[0]
    try:
        health = (await client.get(health_url)).json()
        metrics = await fetch(client, base + "/metrics")
    except (httpx.HTTPError, ValueError) as exc:
        return BridgeView("unreachable", f"pid {pid} does not answer: {exc!r}", pid)
    return BridgeView(
        liveness="live",
        detail=f"pid {pid}, {info.get('api_url', '')}",
        pid=pid,
        status=health.get("status") if isinstance(health, dict) else None,
        problems=_problems(health),
        latency=_recent_latency(health) or _histogram_latency(metrics),
        outcomes=_outcomes(metrics),
        failovers=_failovers(metrics),
        breakers=_breakers(metrics, health),
        health=health if isinstance(health, dict) else None,
    )


def _problems(health: Any) -> tuple[str, ...]:
    """Every tier's problem sentences, prefixed with the tier's name."""
    tiers = health.get("tiers") if isinstance(health, dict) else None
    if not isinstance(tiers, dict):
        return ()
    return tuple(
        f"{name}: {problem}"
        for name, tier in tiers.items()
        if isinstance(tier, dict)
        for problem in tier.get("problems") or ()
    )


def _outcomes(metrics: Scrape | None) -> dict[str, float]:
    if metrics is None:
        return {}
    totals: dict[str, float] = {}
    for s in metrics.select("mcp_cascade_responses_total"):
        totals[s.labels["outcome"]] = totals.get(s.labels["outcome"], 0.0) + s.value
    return totals


def _recent_latency(health: Any) -> dict[str, Latency]:
    """The bridge's window of recent deliveries per tier, where its health gives one."""
    tier = ((health or {}).get("tiers") or {}).get("bridge") if isinstance(health, dict) else None
    figures = tier.get("latency_ms") if isinstance(tier, dict) else None
    if not isinstance(figures, dict):
        return {}
    return {t: Latency(int(f["n"]), f["p50_ms"], f["p99_ms"]) for t, f in figures.items()}


def _histogram_latency(metrics: Scrape | None) -> dict[str, Latency]:
    """p50/p99 per tier from the latency histogram (since the process started)."""
    if metrics is None:
        return {}
    out: dict[str, Latency] = {}
    name = "mcp_cascade_delivery_latency_seconds"
    for tier in TIER_LABELS:
        n = int(metrics.value(name + "_count", tier=tier))
        if n:
            p50, p99 = metrics.quantile(0.5, name, tier=tier), metrics.quantile(0.99, name, tier=tier)
            out[tier] = Latency(n, _ms(p50), _ms(p99))
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _failovers(metrics: Scrape | None) -> tuple[FailoverView, ...]:
    if metrics is None:
        return ()
    return tuple(
        FailoverView(s.labels["from_tier"], s.labels["to_tier"], s.labels["reason"], s.value)
        for s in metrics.select("mcp_cascade_failover_total")
        if s.value > 0
    )


def _breakers(metrics: Scrape | None, health: Any) -> dict[str, BreakerView]:
    """Each session's breaker: from the bridge's health (state and next probe), else from its metrics."""
    found: dict[str, BreakerView] = {}
    if metrics is not None:
        for s in metrics.select("mcp_cascade_breaker_state"):
            if s.value == 1:
                found[s.labels["session"]] = BreakerView(s.labels["state"])
    for session, detail in _health_breakers(health).items():
        if isinstance(detail, dict) and isinstance(detail.get("state"), str):
            probe = detail.get("next_probe_at")
            at = float(probe) if isinstance(probe, int | float) else None
            found[session] = BreakerView(detail["state"], at)
    return found


def _health_breakers(health: Any) -> Mapping[str, Any]:
    """The ``breakers`` map of the bridge's health, at its top level or under its bridge tier."""
    if not isinstance(health, dict):
        return {}
    for where in (health, (health.get("tiers") or {}).get("bridge")):
        found = where.get("breakers") if isinstance(where, dict) else None
        if isinstance(found, dict):
            return found
    return {}
