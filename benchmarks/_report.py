"""What every benchmark shows: its targets met or missed beside the floors, a latency CDF, progress.

- :func:`verdicts` prints each target of the issue with ``met``/``MISSED``, the figure
  and the limit, in the same output as the floors measured in the same run.
- :func:`cdf_svg` writes a latency CDF (ours against the floors, and the peers where a
  benchmark runs them) next to the JSON results (:mod:`mcp_cascade.ops.cdf`, pygal).
- :func:`progress` shows a bar with an ETA on a terminal (rich); plain (nothing) when
  stdout is not a TTY or ``--json`` was asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS
from mcp_cascade.ops.cdf import write_cdf_svg
from mcp_cascade.ops.progress import Tick, progress_bar


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: ``figure`` must be at most (or at least) ``limit``."""

    name: str
    figure: float
    limit: float
    unit: str = "ms"
    at_least: bool = False
    floor: float | None = None  # the same figure of the floor it is measured against, same run

    @property
    def met(self) -> bool:
        return self.figure >= self.limit if self.at_least else self.figure <= self.limit

    def line(self) -> str:
        sign = "≥" if self.at_least else "≤"
        word = "met   " if self.met else "MISSED"
        beside = f"; {self.figure / self.floor:,.1f}× its floor" if self.floor else ""
        limit = f"target {sign} {_num(self.limit)} {self.unit}"
        return f"  {word} {self.name}: {_num(self.figure)} {self.unit} ({limit}{beside})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "limit": self.limit,
            "unit": self.unit,
            "met": self.met,
            "floor": self.floor,
        }


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def verdicts(targets: Sequence[Target]) -> dict[str, dict[str, Any]]:
    """Print every target's verdict; the JSON form for the results file."""
    print("\ntargets (this run, beside the floors above):")
    for target in targets:
        print(target.line())
    return {t.name: t.to_dict() for t in targets}


def cdf_svg(name: str, title: str, series: Mapping[str, Sequence[float]]) -> Path | None:
    """Write ``results/<name>.svg``: the cumulative distribution of each series (ms, log axis)."""
    path = RESULTS / f"{name}.svg"
    if write_cdf_svg(path, title, series):
        return path
    print("(no CDF picture: pip install 'mcp-cascade[bench]' for pygal)", file=sys.stderr)
    return None


__all__ = ["Target", "Tick", "cdf_svg", "progress", "verdicts"]


def progress(label: str, total: float, *, plain: bool = False) -> AbstractContextManager[Tick]:
    """A progress bar with an ETA on a terminal; nothing when ``plain`` or stdout is not a TTY."""
    return progress_bar(label, total, plain=plain)
