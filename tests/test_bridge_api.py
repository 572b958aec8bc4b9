"""The bridge's signed outbound API, in-process against the fake Bot API: what sessions may ask of it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_cascade.bridge.access import Access
from mcp_cascade.bridge.api import ApiDeps, build_app
from mcp_cascade.bridge.ledger import Ledger
from mcp_cascade.bridge.prompts import Prompts
from mcp_cascade.bridge.telegram import TelegramClient
from mcp_cascade.config import Config
from mcp_cascade.errors import SignatureError
from mcp_cascade.events import NullObserver
from mcp_cascade.send.retry import Backoff
from mcp_cascade.signing import Signer, load_or_create_secret, verify_answer
from mcp_cascade.testing import random_token
from mcp_cascade.testing.fake_api import FakeTelegram
from tests.helpers import sign

pytestmark = pytest.mark.anyio


class Api:
    def __init__(
        self, client: httpx.AsyncClient, secret: str, fake: FakeTelegram, ledger: Ledger, home: Path
    ):
        self.client = client
        self.secret = secret
        self.fake = fake
        self.ledger = ledger
        self.home = home

    async def post(
        self, path: str, payload: Any, *, secret: str | None = None, **sign_kw: Any
    ) -> httpx.Response:
        raw = json.dumps(payload).encode()
        headers = sign(secret or self.secret, f"out:{time.time_ns()}", raw, **sign_kw)
        return await self.client.post(path, content=raw, headers=headers)


@pytest.fixture
async def api(home: Path) -> AsyncIterator[Api]:
    secret = load_or_create_secret(home)
    config = Config.model_validate({"allow": [42]})
    ledger = Ledger.open(home / "bridge" / "ledger.db")
    access = Access(home, lambda: config)
    async with (
        FakeTelegram().serving() as fake,
        TelegramClient(
            random_token(), fake.base_url, NullObserver(), backoff=Backoff(initial_s=0.01, cap_s=0.02)
        ) as tg,
    ):
        deps = ApiDeps(
            Prompts(tg, ledger, access, NullObserver()),
            Signer(secret),
            NullObserver(),
            lambda p: {},
            None,
        )
        transport = httpx.ASGITransport(app=build_app(deps))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield Api(client, secret, fake, ledger, home)


async def test_ask_sends_one_button_per_option_and_returns_where(api: Api) -> None:
    answer = await api.post(
        "/api/ask", {"session": "proj-a", "question": "Deploy?", "options": ["yes", "not now"]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (message,) = api.fake.messages(42)
    assert body == {"request_id": body["request_id"], "chat_id": 42, "message_id": message.message_id}
    assert "proj-a" in message.text and "Deploy?" in message.text
    assert [b["text"] for b in message.buttons()] == ["yes", "not now"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in message.buttons())
    prompt = api.ledger.prompt_at(42, message.message_id)
    assert prompt is not None and prompt.request_id == body["request_id"] and prompt.session == "proj-a"


async def test_a_forged_stale_or_unsigned_call_is_refused_with_401_and_sends_nothing(api: Api) -> None:
    payload = {"session": "proj-a", "question": "Deploy?"}
    forged = await api.post("/api/ask", payload, secret="whsec_" + "A" * 43 + "=")
    stale = await api.post("/api/ask", payload, timestamp=int(time.time()) - 3600)
    unsigned = await api.client.post("/api/ask", json=payload)
    assert [r.status_code for r in (forged, stale, unsigned)] == [401, 401, 401]
    assert "signature" in forged.json()["error"] and "tolerance" in stale.json()["error"]
    assert api.fake.messages() == []


async def test_bad_fields_are_named_in_a_422(api: Api) -> None:
    answer = await api.post("/api/ask", {"session": "Bad Name", "question": "", "options": ["a"] * 11})
    assert answer.status_code == 422
    paths = {e["path"] for e in answer.json()["errors"]}
    assert paths == {"$.session", "$.question", "$.options"}
    permission = await api.post("/api/permission", {"session": "proj-a", "request_id": "not ok!"})
    assert permission.status_code == 422 and permission.json()["errors"][0]["path"] == "$.request_id"
    assert api.fake.messages() == []


async def test_permission_prompts_offer_allow_deny_and_the_text_code(api: Api) -> None:
    answer = await api.post(
        "/api/permission",
        {
            "session": "proj-a",
            "request_id": "abcde",
            "tool_name": "Bash",
            "description": "Run the tests",
            "input_preview": "pytest -q",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["request_id"] == "abcde"
    (message,) = api.fake.messages(42)
    assert [b["text"] for b in message.buttons()] == ["✅ Allow", "❌ Deny"]
    assert "Bash" in message.text and "pytest -q" in message.text and '"yes abcde"' in message.text


async def test_long_replies_are_split_and_only_allowed_chats_can_be_written_to(api: Api) -> None:
    answer = await api.post("/api/reply", {"session": "proj-a", "chat_id": 42, "text": "x" * 5000})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["message_ids"]) == 2
    assert "".join(m.text for m in api.fake.messages(42)).count("x") == 5000
    other = await api.post("/api/reply", {"session": "proj-a", "chat_id": 999, "text": "hi"})
    assert other.status_code == 403
    assert api.ledger.session_of(42, answer.json()["message_id"]) == "proj-a"


async def test_with_nobody_paired_a_question_is_refused_with_what_to_do(home: Path, api: Api) -> None:
    nobody = Config.model_validate({})
    deps = ApiDeps(
        Prompts(_client_of(api), api.ledger, Access(home, lambda: nobody), NullObserver()),
        Signer(api.secret),
        NullObserver(),
        lambda p: {},
        None,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(deps)), base_url="http://b"
    ) as client:
        raw = json.dumps({"session": "proj-a", "question": "hi"}).encode()
        answer = await client.post("/api/ask", content=raw, headers=sign(api.secret, "out:1", raw))
    assert answer.status_code == 409 and "bridge pair" in answer.json()["error"]


async def test_telegram_refusing_a_send_is_a_502_naming_telegram(api: Api) -> None:
    api.fake.fail("sendMessage", 400, description="Bad Request: chat not found")
    answer = await api.post("/api/ask", {"session": "proj-a", "question": "hi"})
    assert answer.status_code == 502 and "Telegram" in answer.json()["error"]


def _client_of(api: Api) -> TelegramClient:
    return TelegramClient(random_token(), api.fake.base_url, NullObserver())


async def test_a_replayed_signed_request_sends_nothing_twice(api: Api) -> None:
    """Finding 7: the same signed /api/reply played again within the timestamp window is refused."""
    raw = json.dumps({"session": "proj-a", "chat_id": 42, "text": "only once"}).encode()
    headers = sign(api.secret, "out:replayed", raw)
    first = await api.client.post("/api/reply", content=raw, headers=headers)
    again = await api.client.post("/api/reply", content=raw, headers=headers)
    assert first.status_code == 200, first.text
    assert again.status_code == 401 and "already used" in again.json()["error"]
    assert [m.text.endswith("only once") for m in api.fake.messages(42)] == [True]


async def test_answers_to_signed_requests_are_signed_for_that_request(api: Api) -> None:
    raw = json.dumps({"nonce": "ab" * 16}).encode()
    answer = await api.client.post("/api/hello", content=raw, headers=sign(api.secret, "out:hello", raw))
    assert answer.status_code == 200 and answer.json()["nonce"] == "ab" * 16
    verify_answer(Signer(api.secret), "out:hello", answer.headers, answer.content)
    with pytest.raises(SignatureError):
        verify_answer(Signer(api.secret), "out:other", answer.headers, answer.content)
    forged = await api.post("/api/hello", {"nonce": "cd" * 16}, secret="whsec_" + "A" * 44)
    assert forged.status_code == 401 and "webhook-signature" not in forged.headers
