"""Latency CDF pictures (SVG) for the benchmarks and the soak, drawn with pygal when it is installed.

pygal is in the ``bench`` extra: a small pure-Python SVG library, where
matplotlib would pull numpy and a font cache for a few lines on a log axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path


def write_cdf_svg(path: Path, title: str, series: Mapping[str, Sequence[float]]) -> bool:
    """Write the cumulative distribution of each series (ms, log axis) to ``path``.

    False, and nothing written, without pygal or without a value to draw (a soak
    run of the load test alone has no scenario latencies; pygal fails on an empty chart).
    """
    drawn = {label: [v for v in values if v > 0] for label, values in series.items()}
    drawn = {label: values for label, values in drawn.items() if values}
    if not drawn:
        return False
    try:
        import pygal
    except ImportError:
        return False
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
        x_labels=[math.log10(v) for v in (0.01, 0.1, 1, 10, 100, 1000, 10000)],
    )
    # The x axis is log10(ms), labelled in ms: pygal's own log scale applies to y only.
    for label, values in drawn.items():
        chart.add(label, [(math.log10(x), y) for x, y in cdf_points(values)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(chart.render())
    return True


def cdf_points(values: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    """At most about ``points`` (value, fraction at or below) pairs, the last one always included."""
    ordered = sorted(values)
    if not ordered:
        return []
    step = max(1, len(ordered) // points)
    picked = list(range(0, len(ordered), step))
    if picked[-1] != len(ordered) - 1:
        picked.append(len(ordered) - 1)
    return [(ordered[i], (i + 1) / len(ordered)) for i in picked]
