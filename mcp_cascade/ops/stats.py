"""The one percentile rule of the package: nearest rank, as the health endpoints, the demo, the soak
and the benchmarks report latencies."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["nearest_rank"]


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank quantile ``q`` (0 to 1) of a sorted, non-empty sequence: a value that occurred."""
    return ordered[max(1, min(len(ordered), math.ceil(q * len(ordered)))) - 1]
