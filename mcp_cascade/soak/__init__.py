"""The reliability harness behind ``mcp-cascade soak``: faults injected into real processes, answers counted.

Each scenario drives responses through the real sender into real ``serve``
processes while it breaks things on schedule, then counts on the MCP client
side what each session received: lost, duplicated, redelivered after a crash,
out of order, and the latency per tier.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mcp_cascade.ops.cdf import write_cdf_svg
from mcp_cascade.soak import cluster
from mcp_cascade.soak.disk import mounts_unavailable
from mcp_cascade.soak.report import machine, summary
from mcp_cascade.soak.run import run_scenario
from mcp_cascade.soak.scenarios import SCENARIOS, scenario_named

__all__ = ["SCENARIOS", "soak"]


async def soak(
    names: Sequence[str],
    count: int,
    seed: int,
    *,
    workdir: Path | None = None,
    json_path: Path | None = None,
    command: str = "",
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Run the named scenarios one after another; the whole report (also written to ``json_path``).

    With ``json_path``, a latency CDF of every scenario is drawn beside it (``.svg``, with pygal).
    ``tick`` is called once per response that has its receipt (the progress bar).
    """
    latencies: dict[str, list[float]] = {}
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="mcp-cascade-soak-")) if workdir is None else workdir
    results: list[dict[str, Any]] = []
    try:
        for name in names:
            if name == cluster.NAME:
                result = await cluster.run_cluster(count, seed, root, tick)
                latencies[name] = result.pop("latencies_ms")
                results.append(result)
                continue
            scenario = scenario_named(name)
            reason = mounts_unavailable() if scenario.needs_mounts else None
            if reason is not None:
                results.append({"scenario": name, "title": scenario.title, "skipped": reason})
                continue
            result = await run_scenario(scenario, count, seed, root, tick)
            latencies[name] = result.pop("latencies_ms")
            results.append(result)
            if json_path is not None:  # a long run leaves its results so far behind
                _write(json_path, _report(results, count, seed, command))
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    report = _report(results, count, seed, command)
    if json_path is not None:
        _write(json_path, report)
        title = "Soak: hand-over to the sender → first push into the session"
        write_cdf_svg(json_path.with_suffix(".svg"), title, latencies)
    return report


def _report(results: list[dict[str, Any]], count: int, seed: int, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": machine(),
        "count": count,
        "seed": seed,
        "summary": summary(results),
        "scenarios": results,
    }


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
