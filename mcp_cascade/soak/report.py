"""The soak report: one table a person reads (rich), one JSON document a machine checks."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def machine() -> dict[str, Any]:
    """Where and when the run happened."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _lat(verdict: Mapping[str, Any], tier: str) -> str:
    stats = verdict["latency_ms"].get(tier)
    if not stats:
        return "-"
    return f"{stats['p50']:.1f} / {stats['p99']:.0f} / {stats['max']:.0f}"


def render(report: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the table of scenario verdicts, then each failure."""
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    table = Table(title=f"mcp-cascade soak  ({report['machine']['date']}, seed {report['seed']})")
    for column in ("scenario", "sent", "lost", "dup", "redeliv.", "order", "audit", "faults", "carried by"):
        table.add_column(
            column, justify="left" if column in ("scenario", "faults", "carried by") else "right"
        )
    for tier in ("tier1", "tier2", "tier3", "tier4"):
        table.add_column(f"{tier} ms p50/p99/max", justify="right")
    table.add_column("verdict")
    for result in report["scenarios"]:
        if result.get("skipped"):
            table.add_row(result["scenario"], *[""] * 12, f"[yellow]skipped: {result['skipped']}")
            continue
        v = result["verdict"]
        applied = result["faults_applied"]
        faults = f"{len(applied)} kinds, {sum(applied.values())} times"
        table.add_row(
            result["scenario"],
            str(v["sent"]),
            str(v["lost"]),
            str(v["duplicated"]),
            str(v["redelivered"]),
            str(v["out_of_order"]),
            f"{result['audit']['checked'] - result['audit']['incomplete']}/{result['audit']['checked']}",
            faults,
            " ".join(f"{t[-1]}:{n}" for t, n in v["carried_by"].items()),
            _lat(v, "tier1"),
            _lat(v, "tier2"),
            _lat(v, "tier3"),
            _lat(v, "tier4"),
            "[green]pass" if result["passed"] else "[red]FAIL",
        )
    console.print(table)
    for result in report["scenarios"]:
        for failure in result.get("failures", []):
            console.print(f"[red]{result['scenario']}: {failure}")
    load = report.get("load")
    if load:
        render_load(load, console)


def render_load(load: Mapping[str, Any], console: Console) -> None:
    """The constant-rate and step results, beside each tier's budget."""
    table = Table(title=f"open-loop load, {load['rate']} req/s for {load['duration_s']} s per mode")
    for column in (
        "mode",
        "sent",
        "lost",
        "tier",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "budget ms",
        "within",
    ):
        table.add_column(column, justify="left" if column in ("mode", "within") else "right")
    for row in load["constant"]:
        for tier, stats in row["latency_ms"].items():
            table.add_row(
                row["mode"],
                str(row["sent"]),
                str(row["lost"]),
                tier,
                f"{stats['p50']:.2f}",
                f"{stats['p99']:.2f}",
                f"{stats['p99_9']:.2f}",
                f"{stats['max']:.2f}",
                f"{row['budget_ms'][tier]:.0f}",
                "yes" if stats["p99"] <= row["budget_ms"][tier] else "[red]no",
            )
    console.print(table)
    steps = Table(title="step test (cascade choosing)")
    for column in ("offered req/s", "achieved req/s", "p50 ms", "p99 ms", "lost", "p99 ≤ 100 ms", "kept up"):
        steps.add_column(column, justify="right")
    for step in load["steps"]:
        steps.add_row(
            str(step["offered"]),
            f"{step['achieved']:.0f}",
            f"{step['p50']:.1f}",
            f"{step['p99']:.1f}",
            str(step["lost"]),
            "yes" if step["within_budget"] else "no",
            "no" if step["saturated"] else "yes",
        )
    console.print(steps)
    floor = load["loopback_floor_ms"]
    console.print(
        f"floor (bare loopback TCP round trip, same run): p50 {floor['p50']} ms, p99 {floor['p99']} ms"
    )
    console.print(f"saturation: {load['saturation']}")


def summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over every scenario that ran."""
    ran = [r for r in results if not r.get("skipped")]
    keys = ("sent", "lost", "duplicated", "redelivered", "out_of_order", "acked_not_delivered")
    return {
        **{key: sum(r["verdict"][key] for r in ran) for key in keys},
        "scenarios": len(ran),
        "skipped": [r["scenario"] for r in results if r.get("skipped")],
        "failed": [r["scenario"] for r in ran if not r["passed"]],
        "passed": all(r["passed"] for r in ran),
    }
