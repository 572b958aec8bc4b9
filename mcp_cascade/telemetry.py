"""Events → OpenTelemetry metrics (Prometheus text), JSON log lines and the audit trail.

Every metric name of the contract is created and set to zero at start-up, so a
dashboard never sees a series appear late.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, generate_latest

from mcp_cascade.events import Event

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TIERS = ("1", "2", "3")
OUTCOMES = ("delivered", "queued", "duplicate", "rejected", "failed")
BREAKER_STATES = ("closed", "open", "half_open")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
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


class JsonLog:
    """One JSON object per line, to stderr or a file; never stdout."""

    def __init__(self, stream: IO[str] | None = None, level: str = "info", **static: Any) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._threshold = _LEVELS.get(level, 20)
        self._static = static
        self._lock = threading.Lock()

    def write(self, event: Event) -> None:
        """Log ``event`` if its level passes the threshold."""
        if _LEVELS.get(event.level, 20) < self._threshold:
            return
        record: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            + f".{int(time.time() * 1000) % 1000:03d}Z",
            "level": event.level,
            "event": event.event,
            **self._static,
        }
        for key in ("session", "tier", "response_id", "correlation_id", "latency_ms", "reason"):
            value = getattr(event, key)
            if value is not None:
                record[key] = round(value, 3) if key == "latency_ms" else value
        record.update(event.fields)
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not take delivery down with it


class AuditTrail:
    """Append-only JSON lines in the home, rotated by size (``audit.jsonl`` → ``audit.jsonl.1``).

    Several processes append to one file: each record is one ``write`` on an
    ``O_APPEND`` descriptor, so lines never interleave.
    """

    def __init__(self, path: Path, max_bytes: int, component: str) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._component = component
        self._lock = threading.Lock()
        self._fd = -1
        self._ino = -1

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._ino = os.fstat(self._fd).st_ino

    def write(self, event: Event) -> None:
        """Append ``event`` as a record."""
        record: dict[str, Any] = {
            "ts": round(time.time(), 6),
            "component": self._component,
            "event": event.event,
        }
        for key in ("session", "tier", "response_id", "correlation_id", "latency_ms", "reason"):
            value = getattr(event, key)
            if value is not None:
                record[key] = value
        if event.fields:
            record.update(event.fields)
        data = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self._rotate_if_needed()
                os.write(self._fd, data)
            except OSError:
                pass  # the audit trail is a record, never a reason to fail a delivery

    def _rotate_if_needed(self) -> None:
        if self._fd < 0:
            self._open()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._open()
            return
        if st.st_ino != self._ino:  # another process rotated it
            self._open()
        elif st.st_size >= self._max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._open()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_audit(home: Path) -> Iterable[dict[str, Any]]:
    """Every audit record under ``home``, oldest first (the rotated file, then the current one)."""
    for name in ("audit.jsonl.1", "audit.jsonl"):
        try:
            with (home / name).open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue  # a torn last line after a crash
        except FileNotFoundError:
            continue


class Metrics:
    """The contract's instruments, on a private Prometheus registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(disable_target_info=True, registry=self.registry)
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
            "mcp_cascade_delivery_latency", unit="s", description="received → pushed into the session"
        )
        self.failovers = meter.create_counter("mcp_cascade_failover", description="failovers between tiers")
        self.breaker = meter.create_gauge(
            "mcp_cascade_breaker_state", description="1 for the breaker's state"
        )
        self.tier_up = meter.create_gauge("mcp_cascade_tier_up", description="1 when the tier is usable")
        self.queue_depth = meter.create_gauge(
            "mcp_cascade_queue_depth", description="responses not yet delivered"
        )
        self.oldest_age = meter.create_gauge(
            "mcp_cascade_oldest_pending_age", unit="s", description="age of the oldest undelivered response"
        )
        self.overflows = meter.create_counter(
            "mcp_cascade_inotify_overflows", description="IN_Q_OVERFLOW seen"
        )
        self.rescans = meter.create_counter("mcp_cascade_rescans", description="full inbox rescans")
        self.http = meter.create_histogram(
            "http.server.request.duration", unit="s", description="HTTP server request duration"
        )
        for tier in TIERS:
            for outcome in OUTCOMES:
                self.responses.add(0, {"tier": tier, "outcome": outcome})
            self.tier_up.set(1, {"tier": tier})
        self.failovers.add(0, {"from_tier": "1", "to_tier": "3", "reason": "none"})
        self.queue_depth.set(0)
        self.oldest_age.set(0)
        self.overflows.add(0)
        self.rescans.add(0)
        self.set_breaker("none", "closed")

    def set_breaker(self, session: str, state: str) -> None:
        """One 0/1 series per state for ``session``."""
        for candidate in BREAKER_STATES:
            self.breaker.set(1 if candidate == state else 0, {"session": session, "state": candidate})

    def render(self) -> bytes:
        """Prometheus text exposition."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Stop the meter provider."""
        self._provider.shutdown()


class Telemetry:
    """The Observer of a process: metrics, logs and audit from one event stream."""

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

    def emit(self, event: Event) -> None:
        """Record ``event`` everywhere it belongs."""
        self.log.write(event)
        if self.audit is not None and event.event in AUDIT_EVENTS and event.response_id:
            self.audit.write(event)
        if self.metrics is not None:
            self._record(self.metrics, event)

    def _record(self, m: Metrics, event: Event) -> None:
        tier = str(event.tier) if event.tier is not None else "0"
        outcome = _OUTCOME_OF.get(event.event)
        if outcome is not None:
            m.responses.add(1, {"tier": tier, "outcome": outcome})
        if event.event == "pushed" and event.latency_ms is not None:
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
        elif event.event == "breaker":
            m.set_breaker(str(event.session), str(event.fields.get("state")))
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


def open_log_stream(path: Path | None) -> IO[str]:
    """stderr, or the configured log file opened for appending."""
    if path is None:
        return sys.stderr
    return path.open("a", encoding="utf-8", buffering=1)
