"""What the core reports: plain events, and the protocol of whoever listens.

The delivery engine, the sidecar, the watcher and the sender emit events; the
telemetry module turns them into metrics, log lines and audit records. The core
never imports a metrics library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a response, a tier or a component.

    ``event`` names it (``received``, ``durable``, ``pushed``, ``duplicate``,
    ``rejected``, ``failed``, ``queued``, ``failover``, ``breaker``, ...).
    """

    event: str
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
