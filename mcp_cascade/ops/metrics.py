"""The contract's metrics (DESIGN 9) through the OpenTelemetry SDK, exposed in Prometheus text.

Every name is in the exposition from start-up: counters and gauges are
created at zero, and a contract family with no series yet (the latency
histogram before the first delivery, breaker states on a process without
breakers) is rendered empty rather than left out, so a dashboard never sees a
name appear late.
"""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric

from mcp_cascade.wire import TIER_LABELS

__all__ = ["BREAKER_STATES", "BUCKETS_S", "FAILOVER_KINDS", "OUTCOMES", "QUARANTINE_REASONS", "Metrics"]

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTCOMES = ("delivered", "queued", "duplicate", "rejected", "failed")
BREAKER_STATES = ("closed", "open", "half_open")
# Why an item was set aside: its content (invalid), not a file one can read (unreadable), refused by the
# store or the client's frame (store, push), or a Telegram update that cannot be routed or carried (update).
QUARANTINE_REASONS = ("invalid", "unreadable", "store", "push", "update")
# The sender's failover kinds (SENDER_API), created at zero for every forward pair of tiers.
FAILOVER_KINDS = ("timeout", "refused", "http_5xx", "breaker_open", "slow", "session_down")
_FORWARD_PAIRS = (("1", "2"), ("1", "3"), ("2", "3"))


class _Complete:
    """Renders the OpenTelemetry collector's families, adding the contract families it has no series for."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        families = {family.name: family for family in self._source.collect()}
        latency = families.get("mcp_cascade_delivery_latency_seconds")
        if not isinstance(latency, HistogramMetricFamily):
            latency = families["mcp_cascade_delivery_latency_seconds"] = HistogramMetricFamily(
                "mcp_cascade_delivery_latency", _LATENCY_HELP, labels=["tier"], unit="seconds"
            )
        seen = {s.labels.get("tier") for s in latency.samples}
        zero = [(f"{b}", 0.0) for b in BUCKETS_S] + [("+Inf", 0.0)]
        for tier in TIER_LABELS:
            if tier not in seen:
                latency.add_metric([tier], zero, 0.0)
        if "mcp_cascade_breaker_state" not in families:
            families["mcp_cascade_breaker_state"] = GaugeMetricFamily(
                "mcp_cascade_breaker_state", _BREAKER_HELP, labels=["session", "state"]
            )
        if "http_server_request_duration_seconds" not in families:
            families["http_server_request_duration_seconds"] = HistogramMetricFamily(
                "http_server_request_duration",
                _HTTP_HELP,
                labels=["http_request_method", "http_response_status_code", "http_route"],
                unit="seconds",
            )
        yield from families.values()


_LATENCY_HELP = "time from receipt to delivery into the session, by tier"
_BREAKER_HELP = "1 for the state each session's circuit breaker is in, 0 for the others"
_HTTP_HELP = "Duration of HTTP server requests."


class Metrics:
    """The contract's instruments (OpenTelemetry SDK), exposed through a private Prometheus registry.

    ``registry`` is what to serve (``render()`` or ``prometheus_client.make_asgi_app(registry)``).
    """

    def __init__(self) -> None:
        source = CollectorRegistry()
        reader = PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=source)
        self.registry = CollectorRegistry()
        self.registry.register(_Complete(source))
        views = [
            View(
                instrument_name="mcp_cascade_delivery_latency",
                aggregation=ExplicitBucketHistogramAggregation(BUCKETS_S),
            ),
            View(
                instrument_name="http.server.request.duration",
                aggregation=ExplicitBucketHistogramAggregation(BUCKETS_S),
            ),
        ]
        self._provider = MeterProvider(metric_readers=[reader], views=views)
        meter = self._provider.get_meter("mcp_cascade")
        self.responses = meter.create_counter(
            "mcp_cascade_responses", description="responses by tier and outcome"
        )
        self.latency = meter.create_histogram(
            "mcp_cascade_delivery_latency", unit="s", description=_LATENCY_HELP
        )
        self.failovers = meter.create_counter(
            "mcp_cascade_failover", description="failovers from one tier to the next, by reason"
        )
        self.breaker = meter.create_gauge("mcp_cascade_breaker_state", description=_BREAKER_HELP)
        self.tier_up = meter.create_gauge(
            "mcp_cascade_tier_up", description="1 while the tier can carry responses, 0 when it is down"
        )
        self.queue_depth = meter.create_gauge(
            "mcp_cascade_queue_depth", description="responses durable but not yet delivered"
        )
        self.oldest_age = meter.create_gauge(
            "mcp_cascade_oldest_pending_age",
            unit="s",
            description="age of the oldest response not yet delivered (0 when none)",
        )
        self.overflows = meter.create_counter(
            "mcp_cascade_inotify_overflows", description="inotify queue overflows (each triggers a rescan)"
        )
        self.rescans = meter.create_counter("mcp_cascade_rescans", description="full inbox rescans")
        self.quarantined = meter.create_counter(
            "mcp_cascade_quarantined",
            description="items set aside for a fault of their own, by tier and reason",
        )
        self.http = meter.create_histogram("http.server.request.duration", unit="s", description=_HTTP_HELP)
        for tier in TIER_LABELS:
            for outcome in OUTCOMES:
                self.responses.add(0, {"tier": tier, "outcome": outcome})
            self.tier_up.set(1, {"tier": tier})
            for reason in QUARANTINE_REASONS:
                self.quarantined.add(0, {"tier": tier, "reason": reason})
        for source_tier, to_tier in _FORWARD_PAIRS:
            for kind in FAILOVER_KINDS:
                self.failovers.add(0, {"from_tier": source_tier, "to_tier": to_tier, "reason": kind})
        self.queue_depth.set(0)
        self.oldest_age.set(0)
        self.overflows.add(0)
        self.rescans.add(0)

    def set_breaker(self, session: str, state: str) -> None:
        """One 0/1 series per state for ``session``."""
        for candidate in BREAKER_STATES:
            self.breaker.set(1 if candidate == state else 0, {"session": session, "state": candidate})

    def render(self) -> bytes:
        """Prometheus text exposition (format 0.0.4)."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Stop the meter provider."""
        self._provider.shutdown()
