"""Every answer of the tier-1 webhook (DESIGN 5).

The answers come from the real sidecar app, engine and store, in-process over
``httpx.ASGITransport``; what only the wire shows (a chunked body through
uvicorn, the health endpoints of a whole serve) is asked of a real serve
over loopback HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_cascade.sessions import SessionInfo
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign
from tests.inproc import Sidecar, sidecar

pytestmark = pytest.mark.anyio


class Live:
    def __init__(
        self, serve: ServeProcess, info: SessionInfo, secret: str, client: httpx.AsyncClient
    ) -> None:
        self.serve = serve
        self.info = info
        self.secret = secret
        self.client = client

    async def post(self, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(self.info.webhook_url, content=raw, headers=headers)

    async def post_signed(self, data: Any, msg_id: str | None = None, **extra: str) -> httpx.Response:
        raw = data if isinstance(data, bytes) else encode(data)
        mid = msg_id if msg_id is not None else (data.get("id", "x") if isinstance(data, dict) else "x")
        return await self.post(raw, {**sign(self.secret, mid, raw), **extra})


@pytest.fixture
async def live(home: Path) -> AsyncIterator[Live]:
    async with ServeProcess(home, "answers") as serve, httpx.AsyncClient(timeout=10) as client:
        info = await serve.wait_session()
        await serve.initialize()
        yield Live(serve, info, (home / "secret").read_text().strip(), client)
        assert serve.bad_lines == []


@pytest.fixture
async def app(home: Path) -> AsyncIterator[Sidecar]:
    async with sidecar(home, "answers") as running:
        yield running


async def still_serving(app: Sidecar) -> None:
    answer = await app.post_signed(body(id=f"alive:{time.monotonic_ns()}"))
    assert answer.status_code == 200, answer.text


async def test_delivered_answer_carries_id_correlation_tier_and_latency(app: Sidecar) -> None:
    data = body(id="tg:1:1", correlation_id="6f1c2a3b-1111-4222-8333-944455556666")
    answer = await app.post_signed(data)
    assert answer.status_code == 200
    got = answer.json()
    assert got["status"] == "delivered"
    assert got["id"] == "tg:1:1"
    assert got["correlation_id"] == "6f1c2a3b-1111-4222-8333-944455556666"
    assert got["tier"] == 1
    assert got["latency_ms"] >= 0
    assert answer.headers["x-correlation-id"] == got["correlation_id"]


async def test_correlation_id_comes_from_the_header_when_the_body_has_none(app: Sidecar) -> None:
    cid = "0b0e7f7c-2c4e-4c55-9a43-2d9c3c1f0e11"
    answer = await app.post_signed(body(id="tg:1:2"), **{"x-correlation-id": cid})
    assert answer.json()["correlation_id"] == cid
    (pushed,) = await app.pushes.wait(1)
    assert pushed.correlation_id == cid


async def test_a_correlation_header_that_is_not_a_uuid_is_400_naming_it(app: Sidecar) -> None:
    answer = await app.post_signed(body(id="tg:1:2b"), **{"x-correlation-id": "abc"})
    assert answer.status_code == 400
    assert "x-correlation-id" in answer.json()["error"]
    await still_serving(app)


async def test_a_generated_correlation_id_is_a_uuid_echoed_in_the_notification(app: Sidecar) -> None:
    answer = await app.post_signed(body(id="tg:1:3"))
    cid = answer.json()["correlation_id"]
    assert len(cid) == 36 and cid.count("-") == 4
    (pushed,) = await app.pushes.wait(1)
    assert pushed.correlation_id == cid


async def test_the_same_id_twice_is_a_duplicate_and_pushed_once(app: Sidecar) -> None:
    first = await app.post_signed(body(id="tg:1:4"))
    second = await app.post_signed(body(id="tg:1:4", text="a different text"))
    assert first.json()["status"] == "delivered"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    await still_serving(app)
    pushed = await app.pushes.wait(2)
    assert [r.id for r in pushed].count("tg:1:4") == 1


async def test_malformed_json_is_400(app: Sidecar) -> None:
    answer = await app.post_signed(b'{"id": "x", ', msg_id="x")
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]


async def test_webhook_id_that_differs_from_the_body_id_is_400(app: Sidecar) -> None:
    answer = await app.post_signed(body(id="tg:1:5"), msg_id="tg:1:other")
    assert answer.status_code == 400
    assert "does not equal" in answer.json()["error"]


@pytest.mark.parametrize(
    "case", ["missing", "forged", "stale", "future", "fractional", "garbage", "wrong-secret"]
)
async def test_bad_signatures_are_401(app: Sidecar, case: str) -> None:
    data = body(id="tg:1:6")
    raw = encode(data)
    headers = sign(app.secret, "tg:1:6", raw)
    if case == "missing":
        del headers["webhook-signature"]
    elif case == "forged":
        headers["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    elif case == "stale":
        headers = sign(app.secret, "tg:1:6", raw, timestamp=int(time.time()) - 3600)
    elif case == "future":
        headers = sign(app.secret, "tg:1:6", raw, timestamp=int(time.time()) + 3600)
    elif case == "fractional":
        headers["webhook-timestamp"] += ".9"
    elif case == "garbage":
        headers["webhook-signature"] = "v1,!!!not-base64!!! nocomma"
    else:
        headers = sign("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=", "tg:1:6", raw)
    answer = await app.post(raw, headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]
    await still_serving(app)


async def test_a_body_over_64_kib_is_413(app: Sidecar) -> None:
    answer = await app.post_signed(body(id="tg:1:7", text="x" * 70_000))
    assert answer.status_code == 413


async def test_a_chunked_body_over_64_kib_is_413_without_content_length(live: Live) -> None:
    raw = encode(body(id="tg:1:8", text="y" * 80_000))
    headers = sign(live.secret, "tg:1:8", raw)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    answer = await live.client.post(live.info.webhook_url, content=chunks(), headers=headers)
    assert answer.status_code == 413


@pytest.mark.parametrize("ctype", ["text/plain", "", "application/x-www-form-urlencoded"])
async def test_a_wrong_content_type_is_415(app: Sidecar, ctype: str) -> None:
    raw = encode(body(id="tg:1:9"))
    headers = {**sign(app.secret, "tg:1:9", raw), "content-type": ctype}
    answer = await app.post(raw, headers)
    assert answer.status_code == 415


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d.pop("user"), "$"),
        (lambda d: d.update(type="poll"), "$.type"),
        (lambda d: d.pop("text"), "$"),
        (lambda d: d.update(user={"id": "forty-two"}), "$.user.id"),
        (lambda d: d.update(chat_id=10**30), "$.chat_id"),
        (lambda d: d.update(timestamp="yesterday"), "$.timestamp"),
        (lambda d: d.update(meta={"k": 1}), "$.meta.k"),
        (lambda d: d.update(surprise=True), "$"),
        (lambda d: d.update(correlation_id="not-a-uuid"), "$.correlation_id"),
    ],
)
async def test_schema_violations_are_422_naming_the_field(app: Sidecar, mutate: Any, path: str) -> None:
    data = body(id="tg:1:10")
    mutate(data)
    answer = await app.post_signed(data, msg_id="tg:1:10")
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert any(e["path"] == path for e in errors), errors
    assert all(e["message"] for e in errors)


async def test_a_response_for_another_session_is_422(app: Sidecar) -> None:
    answer = await app.post_signed(body(id="tg:1:11", session="someone-else"))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["path"] == "$.session"


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": "h", "type": "message", "text": "t", "user": {"id": ' + b"9" * 5000 + b"}}",
        b'{"id": "h", "type": "message", "text": "\xff\xfe", "user": {"id": 1}}',
        b"\x00\x01\x02",
        b'"just a string"',
        b"[1, 2, 3]",
        b"null",
        b'{"id": ["h"], "type": {"x": 1}, "user": [], "timestamp": 5}',
        b"",
    ],
    ids=[
        "deep-nesting",
        "huge-number",
        "non-utf8",
        "binary",
        "string",
        "array",
        "null",
        "wrong-types",
        "empty",
    ],
)
async def test_hostile_bodies_get_a_4xx_and_the_server_keeps_serving(app: Sidecar, raw: bytes) -> None:
    headers = {
        "content-type": "application/json",
        "webhook-id": "h",
        "webhook-timestamp": str(int(time.time())),
    }
    try:
        raw.decode()
        headers = sign(app.secret, "h", raw)
    except UnicodeDecodeError:
        headers["webhook-signature"] = "v1,AAAA"
    answer = await app.post(raw, headers)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
    assert json.loads(answer.text)["error"]
    await still_serving(app)


async def test_health_endpoints_answer_per_tier(live: Live) -> None:
    base = live.info.health_url
    overall = (await live.client.get(base)).json()
    assert overall["session_id"] == "answers"
    assert set(overall["tiers"]) == {"webhook", "file"}
    assert overall["status"] in ("ok", "degraded", "down")
    for key in ("queue_depth", "oldest_pending_age_s", "uptime_s"):
        assert key in overall
    assert (await live.client.get(base + "/webhook")).status_code == 200
    assert (await live.client.get(base + "/file")).status_code == 200
    assert (await live.client.get(base + "/nonsense")).status_code == 404
