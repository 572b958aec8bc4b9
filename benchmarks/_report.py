"""What every benchmark shows: its targets met or missed beside the floors, a latency CDF, progress.

- :func:`verdicts` prints each target of the issue with ``met``/``MISSED``, the figure
  and the limit, in the same output as the floors measured in the same run.
- :func:`cdf_svg` writes a latency CDF (ours against the floors, and the peers where a
  benchmark runs them) next to the JSON results, with pygal (the ``bench`` extra): a
  small pure-Python SVG library, where matplotlib would pull numpy and a font cache for
  a few lines on a log axis.
- :func:`progress` shows a bar with an ETA on a terminal (rich); plain (nothing) when
  stdout is not a TTY or ``--json`` was asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchmarks._common import RESULTS


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
    try:
        import pygal
    except ImportError:
        print("(no CDF picture: pip install 'mcp-cascade[bench]' for pygal)", file=sys.stderr)
        return None
    import math

    chart = pygal.XY(
        title=title,
        x_title="latency, ms (log scale)",
        y_title="fraction of requests at or below",
        show_dots=False,
        stroke_style={"width": 2},
        legend_at_bottom=True,
        legend_at_bottom_columns=2,
        width=900,
        height=520,
        range=(0, 1),
        truncate_legend=-1,
        js=[],  # a static picture: no script fetched from elsewhere
        x_value_formatter=lambda x: f"{10**x:.3g}",
        x_labels=[math.log10(v) for v in (0.01, 0.1, 1, 10, 100, 1000)],
    )
    # The x axis is log10(ms), labelled in ms: pygal's own log scale applies to y only.
    for label, values in series.items():
        chart.add(label, [(math.log10(x), y) for x, y in _cdf_points([v for v in values if v > 0])])
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.svg"
    path.write_bytes(chart.render())
    return path


def _cdf_points(values: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    ordered = sorted(values)
    if not ordered:
        return []
    step = max(1, len(ordered) // points)
    picked = list(range(0, len(ordered), step))
    if picked[-1] != len(ordered) - 1:
        picked.append(len(ordered) - 1)
    return [(ordered[i], (i + 1) / len(ordered)) for i in picked]


class Tick(Protocol):
    def __call__(self, advance: float = 1) -> None: ...


@contextmanager
def progress(label: str, total: float, *, plain: bool = False) -> Iterator[Tick]:
    """A progress bar with an ETA on a terminal; a no-op when ``plain`` or stdout is not a TTY."""
    if plain or not sys.stdout.isatty():
        yield lambda advance=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda advance=1: bar.advance(task, advance)
