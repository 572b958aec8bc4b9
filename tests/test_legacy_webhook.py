"""cctelegram's webhook body, which cctelegram never signs: accepted unsigned only with the opt-in key.

The body is the shape of cctelegram's webhook draft (DESIGN 7), posted exactly
as it posts it: JSON, no Standard Webhooks headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_cascade.events import NullObserver
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.sidecar import SidecarDeps, build_app
from mcp_cascade.receive.store import Store
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.testing import ServeProcess

pytestmark = pytest.mark.anyio

CCTELEGRAM_BODY = {
    "type": "telegram_response",
    "callback_data": "approve_deploy_42",
    "user_id": 123456789,
    "username": "alice",
    "first_name": "Alice",
    "timestamp": "2026-12-05T10:00:00Z",
}


async def post_unsigned(url: str, data: Mapping[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(url, content=json.dumps(data), headers={"content-type": "application/json"})


async def test_cctelegram_unsigned_body_is_delivered_with_the_key_on(home: Path) -> None:
    async with ServeProcess(home, "legacy", args=["--legacy-webhook-unsigned", "true"]) as serve:
        info = await serve.wait_session()
        await serve.initialize()
        answer = await post_unsigned(info.webhook_url, CCTELEGRAM_BODY)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "delivered"
        (pushed,) = await serve.wait_channel(1)
        assert pushed["params"]["meta"]["type"] == "callback"
        assert "approve_deploy_42" in pushed["params"]["content"]
        # The same unsigned body again is the same answer: recognised, not pushed twice.
        again = await post_unsigned(info.webhook_url, CCTELEGRAM_BODY)
        assert again.json()["status"] == "duplicate"
        # The key opens the door to cctelegram's shape only: an unsigned modern body is still refused.
        modern = {
            "id": "x:1",
            "type": "message",
            "text": "hi",
            "user": {"id": 1},
            "timestamp": "2026-12-05T10:00:00Z",
        }
        assert (await post_unsigned(info.webhook_url, modern)).status_code == 401


async def test_cctelegram_unsigned_body_is_refused_with_the_key_off(home: Path) -> None:
    async with ServeProcess(home, "legacy") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        answer = await post_unsigned(info.webhook_url, CCTELEGRAM_BODY)
        assert answer.status_code == 401
        assert "signature" in answer.json()["error"]
        assert serve.channel() == []


async def test_an_unsigned_body_from_another_host_is_refused_even_with_the_key_on(home: Path) -> None:
    store = Store.open(home / "state.db")
    engine = Engine(store, "legacy", NullObserver())

    def health(tier: str | None) -> Mapping[str, Any]:
        return {"status": "ok"}

    deps = SidecarDeps(
        engine, Signer(load_or_create_secret(home)), "legacy", NullObserver(), health, None, lambda: True
    )
    transport = httpx.ASGITransport(app=build_app(deps), client=("203.0.113.7", 40000))
    try:
        async with engine.running(), httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            answer = await client.post(
                "/webhook/bridge-response",
                content=json.dumps(CCTELEGRAM_BODY),
                headers={"content-type": "application/json"},
            )
        assert answer.status_code == 401
        assert store.counts() == {}
    finally:
        store.close()
