"""The demo in the terminal: a scrolling event log, a live status panel, the closing table."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mcp_cascade.demo.board import Board, Note

TIER_NAMES = {1: "webhook", 2: "bridge redelivery", 3: "inbox"}
_TIER_STYLE = {1: "green", 2: "yellow", 3: "cyan"}
HOLD_S = 0.25
_NOTE_STYLE = {"step": "bold", "failover": "yellow", "breaker": "bold red", "info": "dim", "arrival": ""}


def tier_label(tier: int | None) -> Text:
    """``tier 1`` in its colour (``tier ?`` when unknown)."""
    if tier is None:
        return Text("tier ?", style="red")
    return Text(f"tier {tier}", style=_TIER_STYLE.get(tier, ""))


class Show:
    """Prints the board's notes in time order, with a live panel under them (in a terminal).

    Notes read from files (the audit trail, the bridge's log) reach the board a
    poll period after they happened, stamped with their own time; holding every
    note back for :data:`HOLD_S` lets the log come out in the order things happened.
    """

    def __init__(self, console: Console, board: Board) -> None:
        self.console = console
        self.board = board
        self._held: list[tuple[float, int, Note]] = []
        self._seq = itertools.count()

    def note(self, note: Note) -> None:
        """Queue one event-log line."""
        heapq.heappush(self._held, (note.at, next(self._seq), note))

    def flush(self, until: float = math.inf) -> None:
        """Print the queued lines that happened before ``until``, oldest first."""
        while self._held and self._held[0][0] <= until:
            self._print(heapq.heappop(self._held)[2])

    async def printer(self) -> None:
        """Release lines once they are :data:`HOLD_S` old, until cancelled."""
        while True:
            self.flush(time.perf_counter() - HOLD_S)
            await anyio.sleep(HOLD_S / 4)

    def _print(self, note: Note) -> None:
        at = Text(f"{note.at - self.board.origin:6.2f}s ", style="dim")
        if note.kind == "step":
            self.console.print(Text.assemble("\n", at, Text("▶ " + note.text, style="bold")), soft_wrap=True)
            return
        line = Text.assemble(at, Text(f"{note.session:<9} ", style="bold" if note.session else ""))
        if note.kind == "arrival" or note.tier is not None:
            line.append_text(tier_label(note.tier))
            line.append("  ")
        else:
            line.append(" " * 8)
        style = _NOTE_STYLE.get(note.kind, "")
        if note.kind == "breaker":
            style = "bold green" if note.text.endswith("closed") else style
        line.append(note.text, style=style)
        self.console.print(line, soft_wrap=True)

    def panel(self) -> RenderableType:
        """The live status: tiers so far, breakers (from /health/bridge), what is being waited for."""
        firsts: dict[str, int | None] = {}
        for arrival in self.board.tally.arrivals:
            firsts.setdefault(arrival.response_id, arrival.tier)
        counts = Counter(firsts.values())
        tiers = Text.assemble(
            "carried so far  ",
            *(Text.assemble(tier_label(t), f" {counts.get(t, 0):<5} ") for t in sorted(TIER_NAMES)),
        )
        breakers = Text("breakers (GET /health/bridge)  ")
        for session, snap in sorted(self.board.breakers.items()):
            state = str(snap.get("state"))
            breakers.append(f"{session} ", style="bold")
            breakers.append(f"{state}  ", style="green" if state == "closed" else "bold red")
        waiting = len(self.board.tally.outstanding())
        status = Text(f"step: {self.board.step}   answers in flight: {waiting}", style="dim")
        return Group(Text("─" * 60, style="dim"), tiers, breakers, status)

    @contextmanager
    def live(self) -> Iterator[None]:
        """The live panel while the block runs (nothing is left of it afterwards)."""
        with Live(get_renderable=self.panel, console=self.console, refresh_per_second=8, transient=True):
            yield

    def summary(self, report: Mapping[str, Any]) -> None:
        """The per-tier table, the failovers and breaker moves, and the verdict as the last line."""
        table = Table(title="Which tier carried each response", title_justify="left")
        table.add_column("tier")
        table.add_column("path")
        table.add_column("count", justify="right")
        table.add_column("p50 ms", justify="right")
        table.add_column("p99 ms", justify="right")
        for tier, figures in report["tiers"].items():
            table.add_row(
                tier_label(int(tier)),
                TIER_NAMES[int(tier)],
                str(figures["count"]),
                _ms(figures["p50_ms"]),
                _ms(figures["p99_ms"]),
            )
        self.console.print()
        self.console.print(table)
        held = report["held"]
        self.console.print(
            Text(
                "latency: the person's answer → the session's notification, as Claude Code reads it"
                + (
                    f"; {held} answers given while their session was down are counted, not timed"
                    if held
                    else ""
                ),
                style="dim",
            ),
            soft_wrap=True,
        )
        kinds = Counter(f["reason"] for f in report["failovers"])
        listed = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        self.console.print(f"failovers: {len(report['failovers'])}" + (f" ({listed})" if listed else ""))
        moves = [f"{t['session']} → {t['state']}" for t in report["breaker_transitions"]]
        self.console.print("breaker: " + (", ".join(moves) if moves else "never moved"))
        redelivered = report["verdict"]["redelivered"]
        if redelivered:
            self.console.print(
                f"flagged redeliveries (unknown outcome after a kill, not duplicates): {len(redelivered)}"
            )
        if report.get("error"):
            self.console.print(Text(f"demo failed: {report['error']}", style="bold red"), soft_wrap=True)
        self.console.print(f"finished in {report['elapsed_s']:.1f} s")
        ok = report["verdict"]["exactly_once"]
        self.console.print(
            Text(report["verdict"]["line"], style="bold green" if ok else "bold red"), soft_wrap=True
        )


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"
