"""Monitoring validation: one synthetic response through each tier of a live session.

Tier 1 is a signed POST to the session's webhook, tier 2 the same POST marked
``X-Cascade-Tier: 2`` (what the bridge's redelivery sends), tier 3 a file
written into the session's inbox. Each carries meta ``synthetic="true"``, which
the engine records without pushing a channel message. For each tier the
session's own store is read to check that the probe was delivered and that it
took the probe path (marked delivered and acknowledged in the same instant,
never written to the client), and ``/metrics`` is read before and after to
check that ``responses_total{outcome="delivered"}`` moved. The latency is from
just before sending to the instant the store recorded the delivery.

Used by the ``cascade_selftest`` tool (inside serve) and by ``mcp-cascade
inspect selftest`` (from outside); both go through the same HTTP and files.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx

from mcp_cascade.errors import StoreUnavailable
from mcp_cascade.inbox import enqueue
from mcp_cascade.ops.scrape import Scrape, fetch
from mcp_cascade.receive.store import Store, Stored
from mcp_cascade.response import Response, make_response
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.signing import Signer
from mcp_cascade.wire import Tier, webhook_request

TierStatus = Literal["delivered", "queued", "failed"]
_VIA = {1: "signed webhook POST", 2: "webhook POST with X-Cascade-Tier: 2", 3: "inbox file"}
_POLL_S = 0.002


@dataclass(frozen=True, slots=True)
class TierResult:
    """What became of one tier's probe."""

    tier: int
    via: str
    response_id: str
    status: TierStatus
    latency_ms: float | None
    hidden: bool | None  # recorded as a probe, never pushed to the person; None when not delivered
    metric_moved: bool | None  # None when metrics are off or it was not delivered
    detail: str

    @property
    def ok(self) -> bool:
        """Delivered, kept out of view, and counted (where metrics are on)."""
        return self.status == "delivered" and bool(self.hidden) and self.metric_moved is not False


@dataclass(frozen=True, slots=True)
class SelftestReport:
    """The probes of one session."""

    session: str
    tiers: tuple[TierResult, ...]

    @property
    def ok(self) -> bool:
        """Every tier passed."""
        return all(t.ok for t in self.tiers)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the tool's answer and ``--json``)."""
        return {
            "session": self.session,
            "ok": self.ok,
            "tiers": [{**asdict(t), "ok": t.ok} for t in self.tiers],
        }


def probe(session: str, tier: int) -> Response:
    """A synthetic response for ``tier``."""
    return make_response(
        type="message",
        user_id=0,
        text=f"selftest tier {tier}",
        id=f"selftest:{session}:{tier}:{uuid.uuid4().hex[:12]}",
        session=session,
        meta={"synthetic": "true", "selftest_tier": str(tier)},
    )


async def run_selftest(
    home: Path,
    session: str,
    webhook_url: str,
    signer: Signer,
    *,
    rescan_ms: int,
    timeout_s: float = 5.0,
) -> SelftestReport:
    """Send a probe through tiers 1, 2 and 3 of ``session`` and check what became of each.

    Tier 3 is given two rescan periods and a second to be consumed; if no
    watcher takes it by then it is reported ``queued`` (it stays durable in
    ``inbox/new`` and is recorded whenever a watcher runs).
    """
    paths = SessionPaths(home, session)
    metrics_url = webhook_url.split("/webhook/", 1)[0] + "/metrics"
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        before = await _scrape(client, metrics_url)
        results: list[TierResult] = []
        for tier in (Tier.WEBHOOK, Tier.BRIDGE):
            results.append(await _via_webhook(client, paths, webhook_url, signer, tier, timeout_s))
        results.append(await _via_inbox(paths, rescan_ms / 1000 * 2 + 1.0))
        after = await _scrape(client, metrics_url)
    return SelftestReport(session, tuple(_with_metrics(r, before, after) for r in results))


async def _scrape(client: httpx.AsyncClient, url: str) -> Scrape | None:
    try:
        return await fetch(client, url)
    except httpx.HTTPError:
        return None


async def _via_webhook(
    client: httpx.AsyncClient, paths: SessionPaths, url: str, signer: Signer, tier: Tier, timeout_s: float
) -> TierResult:
    response = probe(paths.session, tier)
    body, headers = webhook_request(signer, response, tier)
    started = time.time()
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return _failed(tier, response, f"POST failed: {exc!r}")
    if answer.status_code not in (200, 202):
        return _failed(tier, response, f"HTTP {answer.status_code}: {answer.text[:200]}")
    stored = await _wait_delivered(paths, response.id, timeout_s if answer.status_code == 200 else 0.0)
    return _result(
        tier, response, started, stored, f"HTTP {answer.status_code} {answer.json().get('status')}"
    )


async def _via_inbox(paths: SessionPaths, wait_s: float) -> TierResult:
    response = probe(paths.session, 3)
    started = time.time()
    try:
        written = await anyio.to_thread.run_sync(enqueue, paths.inbox, response)
    except OSError as exc:
        return _failed(3, response, f"cannot write the inbox: {exc}")
    stored = await _wait_delivered(paths, response.id, wait_s)
    detail = f"written to inbox/new/{written.path.name}"
    if stored is None or stored.state != "delivered":
        detail += f"; not consumed within {wait_s:g}s (is the inbox watcher running?)"
    return _result(3, response, started, stored, detail)


async def _wait_delivered(paths: SessionPaths, response_id: str, wait_s: float) -> Stored | None:
    """The probe's row once it is delivered, or as it stands when ``wait_s`` runs out."""

    def poll() -> Stored | None:
        try:
            store = Store.open_readonly(paths.state_db)
        except StoreUnavailable:
            return None
        try:
            deadline = time.monotonic() + wait_s
            while True:
                found = store.find(response_id)
                row = found[0] if found else None
                if (row is not None and row.state == "delivered") or time.monotonic() >= deadline:
                    return row
                time.sleep(_POLL_S)
        finally:
            store.close()

    return await anyio.to_thread.run_sync(poll, abandon_on_cancel=True)


def _result(tier: int, response: Response, started: float, stored: Stored | None, detail: str) -> TierResult:
    if stored is None or stored.state != "delivered" or stored.pushed_at is None:
        state = "not recorded" if stored is None else stored.state
        return TierResult(tier, _VIA[tier], response.id, "queued", None, None, None, f"{detail}; {state}")
    hidden = stored.acked_at is not None and stored.acked_at == stored.pushed_at
    latency = max(0.0, (stored.pushed_at - started) * 1000)
    return TierResult(tier, _VIA[tier], response.id, "delivered", round(latency, 3), hidden, None, detail)


def _failed(tier: int, response: Response, detail: str) -> TierResult:
    return TierResult(tier, _VIA[tier], response.id, "failed", None, None, None, detail)


def _with_metrics(result: TierResult, before: Scrape | None, after: Scrape | None) -> TierResult:
    if result.status != "delivered" or before is None or after is None:
        return result
    labels = {"tier": str(result.tier), "outcome": "delivered"}
    moved = after.value("mcp_cascade_responses_total", **labels) > before.value(
        "mcp_cascade_responses_total", **labels
    )
    return replace(result, metric_moved=moved)
