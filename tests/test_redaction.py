"""Secrets never leave the process: a bot token planted in Telegram's error answers appears in no output."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mcp_cascade.redact import PLACEHOLDER, keep_secret, scrub, scrub_json
from mcp_cascade.signing import load_or_create_secret
from mcp_cascade.testing import random_token
from mcp_cascade.testing.fake_api import FakeTelegram
from tests.bridge_helpers import ALICE, allow, bridge, greet, sessions
from tests.helpers import sign

pytestmark = pytest.mark.anyio


def test_scrub_removes_a_secret_whatever_its_case_and_its_secret_half_alone() -> None:
    token = "4242424242:AAH-Scrub-Me-Please-0123"
    keep_secret(token)
    assert (
        scrub(f"GET https://api/bot{token}/getMe failed") == f"GET https://api/bot{PLACEHOLDER}/getMe failed"
    )
    assert scrub(f"proxy said: bot4242424242%3a{token.partition(':')[2].lower()}") == (
        f"proxy said: bot4242424242%3a{PLACEHOLDER}"
    )
    assert scrub_json({"a": [token.upper()], token: 1}) == {"a": [PLACEHOLDER], PLACEHOLDER: 1}
    keep_secret("whsec_c2hvcnQ=")  # too short to be told from a word: kept as a whole only
    assert scrub("ordinary words stay") == "ordinary words stay"


def _leaks(text: str, secrets: list[str]) -> list[str]:
    low = text.lower()
    return [s for s in secrets if s.lower() in low]


async def test_a_token_planted_in_telegram_errors_reaches_no_log_health_api_body_or_tool_result(
    home: Path, fake: FakeTelegram
) -> None:
    """Finding 4: a proxy's error description carries the request URL, token included, in any case."""
    token = random_token()
    half = token.partition(":")[2]
    secrets = [token, half]
    url = f"https://api.telegram.org/bot{token}/sendMessage"
    allow(home, ALICE.id)
    outputs: dict[str, str] = {}
    # The bridge's first long poll fails through a proxy that names the URL in upper case.
    fake.fail("getUpdates", 502, description=f"Bad Gateway: upstream {url.upper()} timed out")
    async with sessions(home, "leak") as (serve,), bridge(home, fake, token=token) as running:
        await greet(fake)
        api = running.info()
        assert api is not None
        # python-telegram-bot capitalizes "Bad Request: ..." descriptions, lowering the token.
        fake.fail("sendMessage", 400, description=f"Bad Request: proxy refused {url}", times=2)
        tool = await serve.call_tool("reply", {"chat_id": ALICE.id, "text": "hello"})
        outputs["reply tool result"] = json.dumps(tool)
        assert tool.get("isError"), tool
        body = json.dumps({"session": "leak", "chat_id": ALICE.id, "text": "again"}).encode()
        secret = load_or_create_secret(home)
        headers = {**sign(secret, "leak:1", body), "content-type": "application/json"}
        async with httpx.AsyncClient(timeout=10) as client:
            refused = await client.post(api["api_url"] + "/api/reply", content=body, headers=headers)
            assert refused.status_code == 502
            outputs["/api/reply 502 body"] = refused.text
            for path in ("/health", "/health/bridge", "/metrics"):
                outputs["bridge " + path] = (await client.get(api["api_url"] + path)).text
            assert "Bad Gateway" in outputs["bridge /health/bridge"] or "bad gateway" in (
                outputs["bridge /health/bridge"].lower()
            )
            info = await serve.wait_session()
            outputs["serve /health"] = (await client.get(info.health_url)).text
        outputs["bridge stderr"] = running.stderr_text()
    outputs["serve stderr"] = serve.stderr_path.read_text()
    outputs["audit"] = "".join(p.read_text() for p in home.glob("audit.jsonl*"))  # noqa: ASYNC240
    assert "proxy refused" in outputs["/api/reply 502 body"].lower()
    assert {name: _leaks(text, secrets) for name, text in outputs.items() if _leaks(text, secrets)} == {}
    assert PLACEHOLDER in outputs["/api/reply 502 body"]
