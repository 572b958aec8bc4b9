"""Rich renderings of what the inspect commands found (tables an operator reads at a glance)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mcp_cascade.ops.inspect.queue import QueueItem
from mcp_cascade.ops.inspect.snapshot import BridgeView, Latency, SessionView, Snapshot
from mcp_cascade.ops.inspect.trace import Trace
from mcp_cascade.receive.selftest import SelftestReport

_STYLE = {
    "ok": "green",
    "live": "green",
    "delivered": "green",
    "closed": "green",
    "degraded": "yellow",
    "half_open": "yellow",
    "queued": "yellow",
    "unreachable": "yellow",
    "stopped": "dim",
    "absent": "dim",
    "down": "red",
    "dead": "red",
    "open": "red",
    "failed": "red",
}


def styled(value: str | None) -> Text:
    """``value`` coloured by what it means (ok green, degraded yellow, down red)."""
    if value is None:
        return Text("-", style="dim")
    return Text(value, style=_STYLE.get(value, ""))


def age(seconds: float | None) -> str:
    """A short human duration: 350ms, 12.3s, 4m05s, 2h03m."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def ms(value: float | None) -> str:
    """Milliseconds with a sensible precision."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _latency(figures: Mapping[str, Latency], tiers: Sequence[str] = ("1", "2", "3")) -> str:
    """One line per tier with deliveries: ``t1 0.78/7.50 (20)``."""
    lines = [
        f"t{tier} {ms(found.p50_ms)}/{ms(found.p99_ms)} ({found.n})"
        for tier in tiers
        if (found := figures.get(tier)) is not None
    ]
    return "\n".join(lines) or "-"


def snapshot(snap: Snapshot, now: float | None = None) -> RenderableType:
    """``inspect status``: the sessions table, what is wrong with them, then the bridge."""
    now = time.time() if now is None else now
    sessions = Table(title=f"Sessions in {snap.home}", title_justify="left")
    for column in ("session", "process", "health", "webhook", "file", "queue", "oldest"):
        sessions.add_column(column, no_wrap=column != "session")
    sessions.add_column("p50/p99 ms (n)", no_wrap=True)
    sessions.add_column("breaker", no_wrap=True)
    notes = Table.grid(padding=(0, 2))
    notes.add_column(style="bold", no_wrap=True)
    notes.add_column(overflow="fold")
    for view in snap.sessions:
        sessions.add_row(*_session_row(view, now))
        for line in view.problems or ((view.detail,) if view.liveness != "live" else ()):
            notes.add_row(view.session, line)
        if view.watcher:
            notes.add_row(view.session, f"inbox watcher: {view.watcher}")
    if not snap.sessions:
        sessions.add_row("(no sessions)", *[""] * 8)
    parts: list[RenderableType] = [sessions]
    if notes.row_count:
        parts.append(notes)
    parts.append(bridge(snap.bridge, now))
    return Group(*parts)


def _session_row(view: SessionView, now: float) -> list[RenderableType]:
    breaker: RenderableType = "-"
    if view.breaker is not None:
        breaker = styled(view.breaker.state)
        if view.breaker.next_probe_at is not None and view.breaker.state != "closed":
            breaker = Text.assemble(breaker, f" probe in {age(max(0.0, view.breaker.next_probe_at - now))}")
    name = Text(view.session, style="bold")
    if view.folder:
        started = view.started_at[:19].replace("T", " ")
        name.append(f"\n{view.folder}\nstarted {started}, pid {view.pid}", style="dim")
    return [
        name,
        styled(view.liveness),
        styled(view.status),
        styled(view.tiers.get("webhook")),
        styled(view.tiers.get("file")),
        "-" if view.queue_depth is None else str(view.queue_depth),
        age(view.oldest_pending_age_s) if view.queue_depth else "-",
        _latency(view.latency),
        breaker,
    ]


def bridge(view: BridgeView, now: float) -> RenderableType:
    """The bridge: liveness, outcomes and latency per tier, breakers and failovers."""
    head = Table(title="Bridge", title_justify="left")
    for column in ("process", "health", "delivered", "queued", "failed", "p50/p99 ms (n)"):
        head.add_column(column, no_wrap=True)
    head.add_column("detail", overflow="fold")
    head.add_row(
        styled(view.liveness),
        styled(view.status),
        *(
            f"{view.outcomes.get(k, 0):.0f}" if view.outcomes else "-"
            for k in ("delivered", "queued", "failed")
        ),
        _latency(view.latency),
        view.detail,
    )
    parts: list[RenderableType] = [head]
    if view.problems:
        notes = Table.grid()
        notes.add_column(overflow="fold")
        for problem in view.problems:
            notes.add_row(problem)
        parts.append(notes)
    if view.breakers:
        breakers = Table(title="Breakers", title_justify="left")
        for column in ("session", "state", "next probe"):
            breakers.add_column(column)
        for session, b in sorted(view.breakers.items()):
            probe = "-" if b.next_probe_at is None else f"in {age(max(0.0, b.next_probe_at - now))}"
            breakers.add_row(session, styled(b.state), probe)
        parts.append(breakers)
    if view.failovers:
        title = "Failovers since the bridge started"
        failovers = Table(title=title, title_justify="left", min_width=len(title))  # never a wrapped title
        for column in ("from → to", "reason", "count"):
            failovers.add_column(column)
        for f in sorted(view.failovers, key=lambda f: -f.count):
            failovers.add_row(f"{f.from_tier} → {f.to_tier}", f.reason, f"{f.count:.0f}")
        parts.append(failovers)
    return Group(*parts)


def queue(items: Sequence[QueueItem]) -> RenderableType:
    """``inspect queue``: oldest first."""
    table = Table(title=f"{len(items)} waiting or failed", title_justify="left")
    for column in ("session", "where", "id", "tier", "state", "age", "reason"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            item.session,
            item.where,
            item.id if item.file is None else f"{item.id}\n[dim]{item.file}[/dim]",
            "-" if item.tier is None else str(item.tier),
            styled(item.state),
            age(item.age_s),
            item.reason,
        )
    return table


def trace(found: Trace) -> RenderableType:
    """``inspect trace``: one row per step."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found.steps[0].ts))
    title = (
        f"{', '.join(found.response_ids)}  correlation {', '.join(found.correlation_ids) or '-'}\n"
        f"{found.outcome}; {len(found.steps)} steps over {ms(found.total_ms)} ms from {when}"
    )
    table = Table(title=title, title_justify="left")
    for column in ("+ms", "Δms", "who", "session", "tier", "event", "took ms", "reason / detail"):
        table.add_column(column, overflow="fold")
    for step in found.steps:
        table.add_row(
            ms(step.since_start_ms),
            ms(step.since_previous_ms),
            f"{step.component}[{step.pid}]" if step.pid else step.component,
            step.session or "-",
            "-" if step.tier is None else str(step.tier),
            styled(step.event),
            ms(step.latency_ms),
            _detail(step.reason, step.detail),
        )
    return table


def _detail(reason: str | None, detail: Mapping[str, Any]) -> str:
    parts = [reason] if reason else []
    parts.extend(f"{k}={v}" for k, v in detail.items() if v not in (None, False, ""))
    return "; ".join(parts)


def selftest(reports: Iterable[SelftestReport]) -> RenderableType:
    """``inspect selftest``: one table per session."""
    parts: list[RenderableType] = []
    for report in reports:
        verdict = "[green]passed[/green]" if report.ok else "[red]FAILED[/red]"
        table = Table(title=f"selftest {report.session}: {verdict}", title_justify="left")
        for column in ("tier", "via", "status", "latency ms", "kept out of view", "metrics moved", "detail"):
            table.add_column(column, overflow="fold")
        for t in report.tiers:
            table.add_row(
                str(t.tier),
                t.via,
                styled(t.status),
                ms(t.latency_ms),
                _yes_no(t.hidden),
                _yes_no(t.metric_moved),
                t.detail,
            )
        parts.append(table)
    return Group(*parts)


def _yes_no(value: bool | None) -> Text:
    if value is None:
        return Text("-", style="dim")
    return Text("yes", style="green") if value else Text("NO", style="red")


def events(records: Sequence[Mapping[str, Any]]) -> RenderableType:
    """The latest audit records (``inspect watch``)."""
    table = Table(title="Latest response events", title_justify="left")
    for column in ("time", "who", "session", "tier", "event", "id", "reason"):
        table.add_column(column, overflow="fold")
    for r in records:
        stamp = float(r.get("ts", 0.0))
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}",
            str(r.get("component", "")),
            str(r.get("session") or "-"),
            str(r.get("tier") or "-"),
            styled(str(r.get("event"))),
            str(r.get("response_id") or "-"),
            str(r.get("reason") or ""),
        )
    return table
