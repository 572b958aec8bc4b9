"""/metrics of a real serve subprocess, scraped over HTTP and parsed as Prometheus does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import from_dict
from mcp_cascade.signing import Signer, sign_tier
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio

# DESIGN 9, written out here independently of the package: family name → (type, label names).
CONTRACT: dict[str, tuple[str, set[str]]] = {
    "mcp_cascade_responses": ("counter", {"tier", "outcome"}),
    "mcp_cascade_delivery_latency_seconds": ("histogram", {"tier"}),
    "mcp_cascade_failover": ("counter", {"from_tier", "to_tier", "reason"}),
    "mcp_cascade_breaker_state": ("gauge", {"session", "state"}),
    "mcp_cascade_tier_up": ("gauge", {"tier"}),
    "mcp_cascade_queue_depth": ("gauge", set()),
    "mcp_cascade_oldest_pending_age_seconds": ("gauge", set()),
    "mcp_cascade_inotify_overflows": ("counter", set()),
    "mcp_cascade_rescans": ("counter", set()),
    "http_server_request_duration_seconds": ("histogram", {"http_request_method", "http_route"}),
}
RENDERED_NAMES = (
    "mcp_cascade_responses_total",
    "mcp_cascade_failover_total",
    "mcp_cascade_inotify_overflows_total",
    "mcp_cascade_rescans_total",
    "mcp_cascade_delivery_latency_seconds_bucket",
    "mcp_cascade_breaker_state",
    "mcp_cascade_tier_up",
    "mcp_cascade_queue_depth",
    "mcp_cascade_oldest_pending_age_seconds",
)
BUCKETS = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0"]
BUCKETS += ["2.5", "5.0", "10.0", "+Inf"]


class Scraped:
    """One parsed exposition."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        return sum(
            s.value
            for f in self.families.values()
            for s in f.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def outcome(self, outcome: str) -> float:
        return self.value("mcp_cascade_responses_total", outcome=outcome)


async def scrape(url: str) -> Scraped:
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return Scraped(answer.text)


def files_settled(inbox: Path, *, failed: int) -> bool:
    """The watcher has taken every file from new/ and moved ``failed`` bad ones aside."""
    return not any((inbox / "new").iterdir()) and len(list((inbox / "failed").glob("*.json"))) == failed


async def until(condition: Callable[[], bool]) -> None:
    """Wait for another process to make ``condition`` true (files have no event to wait on here)."""
    while not condition():  # noqa: ASYNC110 - another process's files, nothing to await
        await anyio.sleep(0.01)


def metrics_url(webhook_url: str) -> str:
    return webhook_url.split("/webhook/")[0] + "/metrics"


async def post(client: httpx.AsyncClient, url: str, secret: str, data: Any, **kw: Any) -> httpx.Response:
    raw = encode(data)
    headers = sign(secret, str(data.get("id")), raw)
    if kw.pop("signed_tier", None) == 2:
        headers.update(sign_tier(Signer(secret), headers, 2))
    headers.update(kw.pop("headers", {}))
    return await client.post(url, content=kw.pop("content", raw), headers=headers)


async def test_every_contract_metric_is_exported_with_its_type_from_start_up(home: Path) -> None:
    async with ServeProcess(home, "metrics-a") as serve:
        info = await serve.wait_session()
        with anyio.fail_after(10):
            scraped = await scrape(metrics_url(info.webhook_url))
    for name in RENDERED_NAMES:
        assert f"\n{name}" in scraped.text or f"# TYPE {name} " in scraped.text, name
    for name, (kind, labels) in CONTRACT.items():
        assert name in scraped.families, f"{name} missing at start-up"
        family = scraped.families[name]
        assert family.type == kind, f"{name} is a {family.type}, not a {kind}"
        for sample in family.samples:
            assert labels <= set(sample.labels) - {"le"}, (name, sample.labels)
            assert not any(k.startswith("otel_scope") for k in sample.labels)
    for tier in ("1", "2", "3"):
        bounds = [
            s.labels["le"]
            for s in scraped.families["mcp_cascade_delivery_latency_seconds"].samples
            if s.name.endswith("_bucket") and s.labels["tier"] == tier
        ]
        assert bounds == BUCKETS
        for outcome in ("delivered", "queued", "duplicate", "rejected", "failed"):
            assert scraped.value("mcp_cascade_responses_total", tier=tier, outcome=outcome) == 0
    assert scraped.value("mcp_cascade_queue_depth") == 0


async def test_counters_move_and_received_equals_delivered_duplicate_rejected_pending(home: Path) -> None:
    async with ServeProcess(home, "metrics-b") as serve, httpx.AsyncClient() as client:
        info = await serve.wait_session()
        secret = (home / "secret").read_text().strip()
        url = info.webhook_url
        inbox = home / "sessions" / "metrics-b" / "inbox"
        received = 0
        with anyio.fail_after(30):
            # Before the client initializes: two are queued, one repeats, one is forged.
            early = [body(id=f"early:{n}") for n in range(2)]
            for data in early:
                assert (await post(client, url, secret, data)).status_code == 202
            assert (await post(client, url, secret, early[0])).json()["status"] == "duplicate"
            forged = await client.post(
                url, content=encode(body(id="x:1")), headers=sign("whsec_AAAA", "x:1", b"")
            )
            assert forged.status_code == 401
            # Tier 3: one good file (queued like the webhooks), one that is not JSON.
            enqueue(inbox, from_dict(body(id="early:file")))
            (inbox / "new" / "00000000000000000001-bad.json").write_bytes(b'{"id": "bad:f1"')
            await until(lambda: files_settled(inbox, failed=1))
            received += 6
            first = await scrape(metrics_url(url))
            assert first.outcome("queued") == 3
            assert first.outcome("duplicate") == 1
            assert first.outcome("rejected") == 2
            assert first.outcome("delivered") == 0
            assert first.value("mcp_cascade_responses_total", tier="3", outcome="rejected") == 1
            assert first.value("mcp_cascade_queue_depth") == 3
            assert first.value("mcp_cascade_oldest_pending_age_seconds") > 0
            pending = first.value("mcp_cascade_queue_depth")
            assert (
                received
                == first.outcome("delivered")
                + first.outcome("duplicate")
                + first.outcome("rejected")
                + pending
            )

            await serve.initialize()
            await serve.wait_channel(3)
            good = [body(id=f"late:{n}") for n in range(3)]
            for data in good:
                assert (await post(client, url, secret, data)).json()["status"] == "delivered"
            tier2 = body(id="late:t2")
            claim = body(id="late:forged-tier")  # a tier claim the signature does not cover is ignored
            answer = await post(client, url, secret, claim, headers={"x-cascade-tier": "2"})
            assert answer.json() == {**answer.json(), "status": "delivered", "tier": 1}
            received += 1
            answer = await post(client, url, secret, tier2, signed_tier=2)
            assert answer.json() == {**answer.json(), "status": "delivered", "tier": 2}
            assert (await post(client, url, secret, good[0])).json()["status"] == "duplicate"
            again = (await post(client, url, secret, tier2)).json()  # now on tier 1
            # The answer names the tier that brought it first, so a sender reports that one.
            assert (again["status"], again["tier"], again["first_tier"]) == ("duplicate", 1, 2)
            bad_schema = body(id="bad:1")
            del bad_schema["user"]
            assert (await post(client, url, secret, bad_schema)).status_code == 422
            not_json = await client.post(url, content=b"{", headers=sign(secret, "bad:2", b"{"))
            assert not_json.status_code == 400
            wrong_type = await post(
                client, url, secret, body(id="bad:3"), headers={"content-type": "text/plain"}
            )
            assert wrong_type.status_code == 415
            enqueue(inbox, from_dict(body(id="late:file")))
            enqueue(inbox, from_dict(good[1]))  # already delivered by tier 1
            (inbox / "new" / "00000000000000000002-bad.json").write_bytes(b"[]")
            received += 4 + 2 + 3 + 3
            await serve.wait_channel(8)
            await until(lambda: files_settled(inbox, failed=2))
            # One push loop, in durable order: a later 200 "delivered" means every earlier push is counted.
            assert (await post(client, url, secret, body(id="late:last"))).json()["status"] == "delivered"
            received += 1
            last = await scrape(metrics_url(url))
        delivered, duplicate, rejected = (
            last.outcome("delivered"),
            last.outcome("duplicate"),
            last.outcome("rejected"),
        )
        pending = last.value("mcp_cascade_queue_depth")
        assert (delivered, duplicate, rejected, pending) == (10, 4, 6, 0)
        assert received == delivered + duplicate + rejected + pending
        assert last.value("mcp_cascade_responses_total", tier="3", outcome="delivered") == 2
        assert last.value("mcp_cascade_responses_total", tier="3", outcome="duplicate") == 1
        assert last.value("mcp_cascade_delivery_latency_seconds_count", tier="3") == 2
        assert last.value("mcp_cascade_responses_total", tier="2", outcome="delivered") == 1
        assert last.value("mcp_cascade_responses_total", tier="1", outcome="delivered") == 7
        assert last.value("mcp_cascade_delivery_latency_seconds_count", tier="1") == 7
        assert last.value("mcp_cascade_delivery_latency_seconds_count", tier="2") == 1
        assert last.value("mcp_cascade_delivery_latency_seconds_sum", tier="1") > 0
        webhook_requests = last.value(
            "http_server_request_duration_seconds_count", http_route="/webhook/bridge-response"
        )
        assert webhook_requests == received - 5  # the five files came through the inbox
        assert last.value("mcp_cascade_rescans_total") >= 1
        assert last.value("http_server_request_duration_seconds_count", http_response_status_code="401") == 1
    assert serve.bad_lines == []
