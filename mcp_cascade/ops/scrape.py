"""Reading another process's ``/metrics``: fetch, parse, and the few queries the operator tools need."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Series:
    """One sample line of an exposition."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Scrape:
    """A parsed exposition: every sample, and each family's type."""

    series: tuple[Series, ...]
    types: Mapping[str, str]

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name`` over the series matching ``labels`` (0 when none)."""
        return sum(s.value for s in self.select(name, **labels))

    def select(self, name: str, **labels: str) -> list[Series]:
        """The series of ``name`` whose labels include ``labels``."""
        return [
            s for s in self.series if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def quantile(self, q: float, name: str, **labels: str) -> float | None:
        """``histogram_quantile`` over the cumulative buckets of ``name`` (None without observations)."""
        return bucket_quantile(q, self.select(name + "_bucket", **labels))


def parse(text: str) -> Scrape:
    """Parse Prometheus text exposition."""
    series: list[Series] = []
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        series.extend(Series(s.name, dict(s.labels), float(s.value)) for s in family.samples)
    return Scrape(tuple(series), types)


async def fetch(client: httpx.AsyncClient, url: str) -> Scrape | None:
    """GET and parse ``url``; None when metrics are disabled there (404)."""
    answer = await client.get(url)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return parse(answer.text)


def bucket_quantile(q: float, buckets: Iterable[Series]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank q·count.

    Buckets of several label sets with the same bounds are summed first.
    """
    by_bound: dict[float, float] = {}
    for s in buckets:
        bound = float(s.labels["le"])
        by_bound[bound] = by_bound.get(bound, 0.0) + s.value
    bounds = sorted(by_bound)
    if not bounds or by_bound[bounds[-1]] <= 0:
        return None
    total = by_bound[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = by_bound[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is the best estimate
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
