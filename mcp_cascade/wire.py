"""The webhook's wire contract in one place: tiers, the route, headers, and the signed request.

Both ends import this and nothing heavier: the sender's walk, the self-test
and the benchmarks build their POST with :func:`webhook_request`; the sidecar
reads the same header names. The values are DESIGN 5's and do not change.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from mcp_cascade.response import Response
from mcp_cascade.signing import Signer, sign_tier

__all__ = [
    "CHANNEL",
    "CORRELATION_HEADER",
    "PERMISSION",
    "PERMISSION_REQUEST",
    "TIER_CHOICES",
    "TIER_HEADER",
    "TIER_LABELS",
    "WEBHOOK_PATH",
    "Tier",
    "TierChoice",
    "webhook_request",
]

WEBHOOK_PATH = "/webhook/bridge-response"
"""The sidecar's webhook route."""
TIER_HEADER = "x-cascade-tier"
"""Carried (value ``2``) by a bridge redelivery, with ``x-cascade-tier-signature`` binding it to the
request; absent on a first attempt. The sidecar ignores a claim without a valid signature."""
CORRELATION_HEADER = "x-correlation-id"
"""The response's correlation id, sent with the POST and echoed in the answer."""

CHANNEL = "notifications/claude/channel"
"""The notification that carries a response into Claude Code."""
PERMISSION = "notifications/claude/channel/permission"
"""The notification that carries a permission verdict into Claude Code."""
PERMISSION_REQUEST = "notifications/claude/channel/permission_request"
"""What Claude Code sends when it asks the person for a permission."""

TierChoice = Literal["auto", "webhook", "file"]
"""Which path a delivery may take: every tier in ``tier_order``, tier 1 only, or tier 3 only."""
TIER_CHOICES: tuple[TierChoice, ...] = ("auto", "webhook", "file")


class Tier(IntEnum):
    """The three ways a response reaches a session; the number is what every record and label carries."""

    WEBHOOK = 1
    BRIDGE = 2
    FILE = 3
    NATS = 4  # JetStream, to a session another host serves (never in tier_order: chosen by where it runs)

    @property
    def key(self) -> str:
        """The name ``tier_order`` and the health endpoints use: ``webhook``, ``bridge`` or ``file``."""
        return self.name.lower()

    @classmethod
    def from_key(cls, key: str) -> Tier:
        """The tier a ``tier_order`` name stands for."""
        return cls[key.upper()]


TIER_LABELS = ("1", "2", "3", "4")
"""Each tier's label in metrics and on the channel notification's ``tier`` attribute."""


def webhook_request(
    signer: Signer, response: Response, tier: Tier = Tier.WEBHOOK
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a signed webhook POST carrying ``response`` as ``tier`` (1 or 2)."""
    body = response.to_json()
    headers = signer.headers(response.id, body)
    headers["content-type"] = "application/json"
    headers[CORRELATION_HEADER] = response.correlation_id
    if tier == Tier.BRIDGE:
        headers.update(sign_tier(signer, headers, Tier.BRIDGE))
    return body, headers
