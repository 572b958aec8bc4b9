"""Events → metrics (:mod:`mcp_cascade.ops.metrics`), JSON log lines and the audit trail, from one stream."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mcp_cascade.events import Event, EventName
from mcp_cascade.ops._spool import Spool
from mcp_cascade.ops.audit import AuditTrail
from mcp_cascade.ops.health import LastError
from mcp_cascade.ops.stats import nearest_rank
from mcp_cascade.redact import scrub

if TYPE_CHECKING:
    from mcp_cascade.config import Loaded
    from mcp_cascade.ops.metrics import Metrics

__all__ = [
    "AuditTrail",
    "JsonLog",
    "Metrics",
    "RecentLatencies",
    "Telemetry",
    "make_telemetry",
    "open_log_stream",
]


def __getattr__(name: str) -> Any:
    # OpenTelemetry and the Prometheus client load only where metrics are on (not for ``send``).
    if name == "Metrics":
        from mcp_cascade.ops.metrics import Metrics

        return Metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# Keys every log line carries (null where unknown), in this order.
_LOG_KEYS = ("session", "tier", "response_id", "correlation_id", "latency_ms")
# Events that change the state of one response: these go to the audit trail.
AUDIT_EVENTS: frozenset[EventName] = frozenset(
    {
        "received",
        "durable",
        "pushed",
        "duplicate",
        "rejected",
        "failed",
        "queued",
        "recovered",
        "remote_receipt",
        "attempt",
        "failover",
        "acknowledged",
        "claimed",
        "not_delivered",
        "outbox",
        "sent",
        "retried",
        "quarantined",
    }
)
# Events that count towards responses_total, with the outcome they count as.
_OUTCOME_OF: Mapping[EventName, str] = {
    "pushed": "delivered",
    "queued": "queued",
    "duplicate": "duplicate",
    "rejected": "rejected",
    "failed": "failed",
}


class JsonLog:
    """One JSON object per line, to stderr or a file; never stdout.

    Every line has ``timestamp``, ``level``, ``event``, ``session``, ``tier``,
    ``response_id``, ``correlation_id`` and ``latency_ms`` (null where not
    known), plus ``reason`` on every warning or error.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        level: str = "info",
        *,
        path: Path | None = None,
        background: bool = False,
        **static: Any,
    ) -> None:
        # With ``path``, the lines go to that file, reopened by :meth:`reopen` (logrotate's mv + SIGHUP).
        # With ``background``, lines are formatted and written by a thread, a batch per write and flush
        # (serve, bridge and send: off the event loop); :meth:`flush` waits for them.
        self._path = path
        self._stream = stream if stream is not None else open_log_stream(path)
        self._threshold = _LEVELS.get(level, 20)
        self._static = static
        self._lock = threading.Lock()
        self._spool: Spool[tuple[float, Event]] | None = (
            Spool(self._write_batch, "log-writer") if background else None
        )

    def write(self, event: Event) -> None:
        """Log ``event`` if its level passes the threshold."""
        if _LEVELS.get(event.level, 20) < self._threshold:
            return
        if self._spool is not None:
            self._spool.put((time.time(), event))
            return
        self._emit([self._line(time.time(), event)])

    def flush(self) -> None:
        """Return once every line logged so far is written."""
        if self._spool is not None:
            self._spool.flush()

    def _write_batch(self, items: list[tuple[float, Event]]) -> None:
        self._emit([self._line(ts, event) for ts, event in items])

    def _emit(self, lines: list[str]) -> None:
        with self._lock:
            try:
                self._stream.write("".join(lines))
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not take delivery down with it

    def _line(self, ts: float, event: Event) -> str:
        level = _LEVELS.get(event.level, 20)
        stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record: dict[str, Any] = {"timestamp": stamp, "level": event.level, "event": event.event}
        record.update(self._static)
        for key in _LOG_KEYS:
            value = getattr(event, key)
            if value is not None or key not in record:
                record[key] = round(value, 3) if key == "latency_ms" and value is not None else value
        if event.reason is not None or level >= _LEVELS["warning"]:
            record["reason"] = event.reason or event.event.replace("_", " ")
        for key, value in event.fields.items():
            record.setdefault(key, value)
        return scrub(json.dumps(record, default=str, separators=(",", ":"))) + "\n"

    def reopen(self) -> bool:
        """Open ``log_file`` again by its name (after a rotation moved it); False when logging to stderr.

        The swap happens under the write lock, so every line lands whole in the
        old file (before) or the new one (after), and none is lost. Lines logged
        before the reopen are written (to the old file) first.
        """
        if self._path is None:
            return False
        self.flush()
        fresh = open_log_stream(self._path)
        with self._lock:
            old, self._stream = self._stream, fresh
        old.close()
        return True

    def close(self) -> None:
        """Write what is pending, then close the log file (stderr stays open)."""
        self.flush()
        if self._path is not None:
            with self._lock:
                self._stream.close()


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
            tier: {
                "n": len(v),
                "p50_ms": round(nearest_rank(v, 0.5), 3),
                "p99_ms": round(nearest_rank(v, 0.99), 3),
            }
            for tier, v in sorted(samples.items())
            if v
        }


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
        elif event.event == "quarantined":
            m.quarantined.add(1, {"tier": tier, "reason": str(event.fields.get("kind", "invalid"))})
        elif event.event == "http_request" and event.latency_ms is not None:
            m.http.record(
                event.latency_ms / 1000,
                {
                    "http.request.method": str(event.fields.get("method")),
                    "http.route": str(event.fields.get("route")),
                    "http.response.status_code": int(event.fields.get("status", 0)),
                },
            )

    def reopen_log(self) -> None:
        """On SIGHUP: reopen ``log_file`` (logrotate moved it) and say so as the new file's first line."""
        if self.log.reopen():
            self.emit(Event("log_reopened"))

    def close(self) -> None:
        """Flush and close."""
        self.log.close()
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
    """stderr, or the configured log file opened for appending (created 0600: logs name users)."""
    if path is None:
        return sys.stderr
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)


def make_telemetry(
    loaded: Loaded, component: str, session: str | None = None, *, metrics_served: bool = True
) -> Telemetry:
    """The process's observer: JSON logs (stderr or file), the home's audit trail, metrics.

    ``metrics_served=False`` for a process nobody scrapes (one ``send``): no meters at all.
    """
    cfg = loaded.config
    static: dict[str, Any] = {"component": component}
    if session:
        static["session"] = session
    metrics = None
    if cfg.metrics and metrics_served:
        from mcp_cascade.ops.metrics import Metrics

        metrics = Metrics()
    return Telemetry(
        log=JsonLog(None, cfg.log_level, path=cfg.log_file, background=True, **static),
        audit=AuditTrail(loaded.home / "audit.jsonl", cfg.audit_max_bytes, component, cfg.audit_generations),
        metrics=metrics,
    )
