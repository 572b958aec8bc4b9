"""What the core reports: plain events, and the protocol of whoever listens.

The delivery engine, the sidecar, the watcher and the sender emit events; the
telemetry module turns them into metrics, log lines and audit records. The core
never imports a metrics library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

EventName = Literal[
    "ack_failed",
    "ack_retry",
    "acknowledged",
    "api_refused",
    "attempt",
    "breaker",
    "bridge_listening",
    "claimed",
    "client_closed",
    "config_rejected",
    "config_reloaded",
    "config_watch",
    "duplicate",
    "durable",
    "failed",
    "failover",
    "feedback_failed",
    "handshake_fallback",
    "home_tightened",
    "http_request",
    "inbox_recovered",
    "inotify_overflow",
    "library_log",
    "listening_beyond_loopback",
    "log_reopened",
    "monitor_error",
    "nats_connected",
    "nats_consume",
    "nats_disconnected",
    "nats_down",
    "nats_heartbeat",
    "nats_reconnected",
    "not_delivered",
    "outbox",
    "paired",
    "poll_failed",
    "polled",
    "prompt_failed",
    "prompt_sent",
    "purged",
    "push_failed",
    "push_stalled",
    "push_unrecorded",
    "pushed",
    "python_warning",
    "quarantined",
    "queue_state",
    "queued",
    "reactions_refused",
    "receipt_failed",
    "receipt_lost",
    "receipt_rejected",
    "received",
    "recovered",
    "rejected",
    "remote_receipt",
    "rescan",
    "retried",
    "routed",
    "say_failed",
    "sent",
    "sidecar_listening",
    "signal",
    "stopped",
    "telegram_ready",
    "telegram_retry",
    "tier_state",
    "toast_skipped",
    "topic_created",
    "topic_failed",
    "uncaught",
    "update_retry",
    "watch_error",
    "watch_restored",
    "watcher_chosen",
]
"""Every event's name. A reader comparing against a name not listed here is a type error
(``strict_equality``), so a typo cannot silently yield an empty metric label."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a response, a tier or a component.

    ``event`` names it (one of :data:`EventName`); ``fields`` carry what is
    particular to that event.
    """

    event: EventName
    tier: int | None = None
    response_id: str | None = None
    correlation_id: str | None = None
    session: str | None = None
    latency_ms: float | None = None
    reason: str | None = None
    level: str = "info"
    fields: Mapping[str, Any] = field(default_factory=dict)


class Observer(Protocol):
    """Receives every event; must not block or raise."""

    def emit(self, event: Event) -> None:
        """Handle one event."""


class NullObserver:
    """Drops everything (library use without telemetry)."""

    def emit(self, event: Event) -> None:
        """Ignore ``event``."""
