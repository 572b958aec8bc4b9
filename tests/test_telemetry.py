"""Events into log lines, metrics and recent latencies (in process; the wire tests scrape a real serve)."""

from __future__ import annotations

import io
import json

from prometheus_client.parser import text_string_to_metric_families

from mcp_cascade.events import Event
from mcp_cascade.ops.telemetry import JsonLog, Metrics, RecentLatencies, Telemetry

CORE_KEYS = ("timestamp", "level", "event", "session", "tier", "response_id", "correlation_id", "latency_ms")


def logged(*events: Event, level: str = "info") -> list[dict[str, object]]:
    stream = io.StringIO()
    log = JsonLog(stream, level, component="serve")
    for event in events:
        log.write(event)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_log_line_carries_the_core_keys_and_failures_carry_a_reason() -> None:
    lines = logged(
        Event("pushed", tier=1, response_id="r", correlation_id="c", session="s", latency_ms=1.23456),
        Event("push_failed", level="error"),
        Event("rejected", level="warning", reason="HTTP 401: signature does not verify"),
        Event("http_request", level="debug"),
    )
    assert len(lines) == 3  # debug is below the threshold
    for line in lines:
        assert all(key in line for key in CORE_KEYS), line
        assert line["component"] == "serve"
        assert str(line["timestamp"]).endswith("Z")
    assert lines[0]["latency_ms"] == 1.235 and lines[0]["tier"] == 1
    assert lines[1]["reason"] == "push failed" and lines[1]["response_id"] is None
    assert lines[2]["reason"] == "HTTP 401: signature does not verify"


def test_event_fields_never_overwrite_the_core_keys() -> None:
    (line,) = logged(Event("sent", tier=3, fields={"tier": "spoofed", "status": "queued"}))
    assert line["tier"] == 3 and line["status"] == "queued"


def families(metrics: Metrics) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def samples(metrics: Metrics, name: str, **labels: str) -> list[float]:
    return [
        s.value
        for f in text_string_to_metric_families(metrics.render().decode())
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_the_latency_histogram_keeps_a_zero_series_for_tiers_without_deliveries() -> None:
    metrics = Metrics()
    telemetry = Telemetry(log=JsonLog(io.StringIO()), audit=None, metrics=metrics)
    telemetry.emit(Event("pushed", tier=3, latency_ms=2.0))
    assert samples(metrics, "mcp_cascade_delivery_latency_seconds_count", tier="3") == [1.0]
    assert samples(metrics, "mcp_cascade_delivery_latency_seconds_count", tier="1") == [0.0]
    assert samples(metrics, "mcp_cascade_delivery_latency_seconds_bucket", tier="3", le="0.0025") == [1.0]
    assert samples(metrics, "mcp_cascade_delivery_latency_seconds_bucket", tier="3", le="0.001") == [0.0]
    metrics.shutdown()


def test_sender_events_count_failovers_breakers_and_final_receipts() -> None:
    metrics = Metrics()
    telemetry = Telemetry(log=JsonLog(io.StringIO()), audit=None, metrics=metrics)
    telemetry.emit(Event("failover", tier=3, fields={"from_tier": 1, "to_tier": 3, "kind": "refused"}))
    telemetry.emit(Event("breaker", session="s1", fields={"state": "open", "next_probe_at": 1.0}))
    telemetry.emit(Event("sent", tier=3, latency_ms=4.0, fields={"status": "queued"}))
    telemetry.emit(Event("sent", tier=1, latency_ms=1.0, fields={"status": "delivered"}))
    assert samples(metrics, "mcp_cascade_failover_total", from_tier="1", to_tier="3", reason="refused") == [
        1.0
    ]
    assert samples(metrics, "mcp_cascade_failover_total", from_tier="1", to_tier="2", reason="refused") == [
        0.0
    ]
    assert samples(metrics, "mcp_cascade_breaker_state", session="s1", state="open") == [1.0]
    assert samples(metrics, "mcp_cascade_breaker_state", session="s1", state="closed") == [0.0]
    assert samples(metrics, "mcp_cascade_responses_total", tier="3", outcome="queued") == [1.0]
    assert samples(metrics, "mcp_cascade_responses_total", tier="1", outcome="delivered") == [1.0]
    # Only a delivery is a latency sample: the queued receipt is not.
    assert samples(metrics, "mcp_cascade_delivery_latency_seconds_count", tier="3") == [0.0]
    assert telemetry.recent.summary() == {"1": {"n": 1, "p50_ms": 1.0, "p99_ms": 1.0}}
    telemetry.emit(Event("breaker", session="s1", fields={"state": "closed"}))
    assert samples(metrics, "mcp_cascade_breaker_state", session="s1", state="open") == [0.0]
    metrics.shutdown()


def test_error_events_are_remembered_per_tier_for_health() -> None:
    telemetry = Telemetry(log=JsonLog(io.StringIO()), audit=None, metrics=None)
    telemetry.emit(Event("failed", tier=1, level="error", reason="store: disk I/O error"))
    telemetry.emit(Event("push_failed", level="error", reason="BrokenPipeError()"))
    telemetry.emit(Event("rejected", tier=1, level="warning", reason="bad signature"))
    assert telemetry.last_errors["1"].error == "failed: store: disk I/O error"
    assert telemetry.last_errors[""].error == "push_failed: BrokenPipeError()"
    assert set(telemetry.last_errors) == {"1", ""}


def test_recent_latencies_are_nearest_rank_percentiles_over_a_window() -> None:
    recent = RecentLatencies(window=100)
    for value in range(1, 201):  # only the last 100 (101..200) stay
        recent.add("1", float(value))
    assert recent.summary() == {"1": {"n": 100, "p50_ms": 150.0, "p99_ms": 199.0}}
