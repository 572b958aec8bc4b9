"""Events → OpenTelemetry metrics (Prometheus text), JSON log lines and the audit trail.

Every metric name of the contract (DESIGN 9) is in the exposition from
start-up: counters and gauges are created at zero, and a contract family with
no series yet (the latency histogram before the first delivery, breaker states
on a process without breakers) is rendered empty rather than left out, so a
dashboard never sees a name appear late.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mcp_cascade.audit import AuditTrail, read_audit
from mcp_cascade.events import Event
from mcp_cascade.health import LastError

__all__ = [
    "BREAKER_STATES",
    "BUCKETS_S",
    "FAILOVER_KINDS",
    "OUTCOMES",
    "TIERS",
    "AuditTrail",
    "JsonLog",
    "Metrics",
    "RecentLatencies",
    "Telemetry",
    "open_log_stream",
    "read_audit",
]

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TIERS = ("1", "2", "3")
OUTCOMES = ("delivered", "queued", "duplicate", "rejected", "failed")
BREAKER_STATES = ("closed", "open", "half_open")
# The sender's failover kinds (SENDER_API), created at zero for every forward pair of tiers.
FAILOVER_KINDS = ("timeout", "refused", "http_5xx", "breaker_open", "slow", "session_down")
_FORWARD_PAIRS = (("1", "2"), ("1", "3"), ("2", "3"))
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# Keys every log line carries (null where unknown), in this order.
_LOG_KEYS = ("session", "tier", "response_id", "correlation_id", "latency_ms")
# Events that change the state of one response: these go to the audit trail.
AUDIT_EVENTS = frozenset(
    {
        "received",
        "durable",
        "pushed",
        "duplicate",
        "rejected",
        "failed",
        "queued",
        "recovered",
        "attempt",
        "failover",
        "acknowledged",
        "claimed",
        "not_delivered",
        "outbox",
        "sent",
        "retried",
    }
)
# Events that count towards responses_total, with the outcome they count as.
_OUTCOME_OF = {
    "pushed": "delivered",
    "queued": "queued",
    "duplicate": "duplicate",
    "rejected": "rejected",
    "failed": "failed",
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLog:
    """One JSON object per line, to stderr or a file; never stdout.

    Every line has ``timestamp``, ``level``, ``event``, ``session``, ``tier``,
    ``response_id``, ``correlation_id`` and ``latency_ms`` (null where not
    known), plus ``reason`` on every warning or error.
    """

    def __init__(self, stream: IO[str] | None = None, level: str = "info", **static: Any) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._threshold = _LEVELS.get(level, 20)
        self._static = static
        self._lock = threading.Lock()

    def write(self, event: Event) -> None:
        """Log ``event`` if its level passes the threshold."""
        level = _LEVELS.get(event.level, 20)
        if level < self._threshold:
            return
        record: dict[str, Any] = {"timestamp": _now_iso(), "level": event.level, "event": event.event}
        record.update(self._static)
        for key in _LOG_KEYS:
            value = getattr(event, key)
            if value is not None or key not in record:
                record[key] = round(value, 3) if key == "latency_ms" and value is not None else value
        if event.reason is not None or level >= _LEVELS["warning"]:
            record["reason"] = event.reason or event.event.replace("_", " ")
        for key, value in event.fields.items():
            record.setdefault(key, value)
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not take delivery down with it


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
        for tier in TIERS:
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
        self.http = meter.create_histogram("http.server.request.duration", unit="s", description=_HTTP_HELP)
        for tier in TIERS:
            for outcome in OUTCOMES:
                self.responses.add(0, {"tier": tier, "outcome": outcome})
            self.tier_up.set(1, {"tier": tier})
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


class RecentLatencies:
    """The last deliveries' latencies per tier, for health and ``cascade_status`` (p50/p99 of a window)."""

    def __init__(self, window: int = 256) -> None:
        self._window = window
        self._by_tier: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, tier: str, latency_ms: float) -> None:
        """Record one delivery."""
        with self._lock:
            self._by_tier.setdefault(tier, deque(maxlen=self._window)).append(latency_ms)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{tier: {"n", "p50_ms", "p99_ms"}}`` over the window."""
        with self._lock:
            samples = {tier: sorted(values) for tier, values in self._by_tier.items()}
        return {
            tier: {"n": len(v), "p50_ms": round(_quantile(v, 0.5), 3), "p99_ms": round(_quantile(v, 0.99), 3)}
            for tier, v in sorted(samples.items())
            if v
        }


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


class Telemetry:
    """The Observer of a process: metrics, logs, audit and recent latencies from one event stream."""

    def __init__(
        self,
        *,
        log: JsonLog,
        audit: AuditTrail | None,
        metrics: Metrics | None,
    ) -> None:
        self.log = log
        self.audit = audit
        self.metrics = metrics
        self.recent = RecentLatencies()
        # The latest error-level event per tier ("" for events without one), for health.
        self.last_errors: dict[str, LastError] = {}

    def emit(self, event: Event) -> None:
        """Record ``event`` everywhere it belongs."""
        self.log.write(event)
        if event.level == "error":
            key = str(event.tier) if event.tier is not None else ""
            self.last_errors[key] = LastError(
                time.time(), f"{event.event}: {event.reason or ''}".rstrip(": ")
            )
        if self.audit is not None and event.event in AUDIT_EVENTS and event.response_id:
            self.audit.write(event)
        if event.latency_ms is not None and event.tier is not None and _is_delivery(event):
            self.recent.add(str(event.tier), event.latency_ms)
        if self.metrics is not None:
            self._record(self.metrics, event)

    def _record(self, m: Metrics, event: Event) -> None:
        tier = str(event.tier) if event.tier is not None else "0"
        outcome = _OUTCOME_OF.get(event.event)
        if event.event == "sent":  # the sender's final receipt: delivered, queued or failed
            outcome = str(event.fields.get("status", "failed"))
        if outcome is not None:
            m.responses.add(1, {"tier": tier, "outcome": outcome})
        if _is_delivery(event) and event.latency_ms is not None:
            m.latency.record(event.latency_ms / 1000, {"tier": tier})
        elif event.event == "failover":
            m.failovers.add(
                1,
                {
                    "from_tier": str(event.fields.get("from_tier", "")),
                    "to_tier": str(event.fields.get("to_tier", "")),
                    "reason": str(event.fields.get("kind", "error")),
                },
            )
        elif event.event == "breaker" and event.session:
            m.set_breaker(event.session, str(event.fields.get("state")))
        elif event.event == "tier_state":
            m.tier_up.set(1 if event.fields.get("up") else 0, {"tier": tier})
        elif event.event == "queue_state":
            m.queue_depth.set(int(event.fields.get("depth", 0)))
            m.oldest_age.set(float(event.fields.get("oldest_age_s", 0.0)))
        elif event.event == "inotify_overflow":
            m.overflows.add(1)
        elif event.event == "rescan":
            m.rescans.add(1)
        elif event.event == "http_request" and event.latency_ms is not None:
            m.http.record(
                event.latency_ms / 1000,
                {
                    "http.request.method": str(event.fields.get("method")),
                    "http.route": str(event.fields.get("route")),
                    "http.response.status_code": int(event.fields.get("status", 0)),
                },
            )

    def close(self) -> None:
        """Flush and close."""
        if self.audit is not None:
            self.audit.close()
        if self.metrics is not None:
            self.metrics.shutdown()


def _is_delivery(event: Event) -> bool:
    """A response reached its session: pushed by serve, or confirmed delivered to the sender."""
    if event.event == "pushed":
        return True
    return event.event == "sent" and event.fields.get("status") == "delivered"


def open_log_stream(path: Path | None) -> IO[str]:
    """stderr, or the configured log file opened for appending."""
    if path is None:
        return sys.stderr
    return path.open("a", encoding="utf-8", buffering=1)
