"""What a delivery records: each attempt, how the walk ended, the receipt; and what an answer means.

The walk (:mod:`mcp_cascade.send._walk`) appends an :class:`Attempt` per try and
ends with a :class:`Result`; the :class:`~mcp_cascade.send.cascade.Sender` turns
them into the :class:`Receipt` it returns. :func:`interpret` reads a sidecar's
answer: delivered, queued, refused for good (a body no tier would accept), or
worth another try.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mcp_cascade.events import Event, EventName
from mcp_cascade.wire import Tier

DeliveryStatus = Literal["delivered", "queued", "failed"]
AttemptOutcome = Literal["ok", "error", "timeout", "refused", "skipped"]
# Answers that say the response itself is unacceptable: another tier would not change that.
_PERMANENT = frozenset({400, 413, 415, 422})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one tier: what happened, why, and how long it took."""

    tier: Tier
    outcome: AttemptOutcome
    reason: str
    latency_ms: float
    status_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "tier": self.tier,
            "outcome": self.outcome,
            "reason": self.reason,
            "latency_ms": round(self.latency_ms, 3),
            "status_code": self.status_code,
        }


@dataclass(frozen=True, slots=True)
class Result:
    """How a walk ended: the receipt's status and tier, and why the server refused it if it did."""

    status: DeliveryStatus
    tier: Tier | None
    rejected: str = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    """The result of one delivery.

    ``delivered``: pushed into the session (or it had it already); ``queued``:
    durable at the server (a 202, or the inbox) and pushed when it can be;
    ``failed``: nothing durable at the server yet (the outbox keeps it).
    """

    response_id: str
    correlation_id: str
    session: str
    status: DeliveryStatus
    tier: int | None
    latency_ms: float
    attempts: tuple[Attempt, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what ``mcp-cascade send`` prints)."""
        return {
            "response_id": self.response_id,
            "correlation_id": self.correlation_id,
            "session": self.session,
            "status": self.status,
            "tier": self.tier,
            "latency_ms": round(self.latency_ms, 3),
            "attempts": [a.to_dict() for a in self.attempts],
        }

    def event(
        self, name: EventName, *, level: str, fields: Mapping[str, Any], reason: str | None = None
    ) -> Event:
        """The event that reports this receipt (``sent``, ``not_delivered``)."""
        return Event(
            name,
            tier=self.tier,
            response_id=self.response_id,
            correlation_id=self.correlation_id,
            session=self.session,
            latency_ms=self.latency_ms,
            reason=reason,
            level=level,
            fields=fields,
        )


def interpret(code: int, payload: Any, tier: Tier) -> tuple[Result | None, AttemptOutcome, str]:
    """What a sidecar's answer (status code and JSON body) means for the delivery, and how to record it."""
    status = payload.get("status") if isinstance(payload, dict) else None
    if code == 200 and status in ("delivered", "duplicate"):
        # A duplicate names the tier that reached the session first (a late tier-1 answer, say).
        first = payload.get("first_tier") if status == "duplicate" else None
        by = first if first in (1, 2, 3) else tier
        return (
            Result("delivered", by),
            "ok",
            f"HTTP 200 {status}" + (f" (first by tier {by})" if by != tier else ""),
        )
    if code == 202 and status == "queued":
        return Result("queued", tier), "ok", "HTTP 202 queued"
    detail = payload.get("error") if isinstance(payload, dict) else payload
    reason = f"HTTP {code}: {detail}" if detail else f"HTTP {code}"
    if code in _PERMANENT and not _wrong_session(payload):
        return Result("failed", None, rejected=reason), "error", reason
    if 200 <= code < 300:
        reason = f"HTTP {code} with an unexpected body: {str(payload)[:200]}"
    return None, "error", reason


def _wrong_session(payload: Any) -> bool:
    # A 422 about $.session means another session's server answers at this address (a reused port).
    errors = payload.get("errors") if isinstance(payload, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("path") == "$.session" for e in errors
    )


def failure_kind(outcome: AttemptOutcome, code: int | None) -> str:
    """Why a tier did not take the response, as the failover event names it."""
    if outcome in ("timeout", "refused"):
        return outcome
    if code is not None and code >= 500:
        return "http_5xx"
    if code is not None and code >= 400:
        return "http_4xx"
    return "error"
