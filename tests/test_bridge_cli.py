"""The command line: ``fake-telegram`` prints a usable base URL; ``bridge`` fails clearly without a token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.streams.text import TextReceiveStream

pytestmark = pytest.mark.anyio
ENV = dict(os.environ)


async def test_fake_telegram_prints_its_base_url_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "mcp_cascade", "fake-telegram", "--token", "1:abc"]
    async with await anyio.open_process(command, env=ENV, stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        with anyio.fail_after(20):
            first = ""
            async for chunk in TextReceiveStream(process.stdout):
                first += chunk
                if "\n" in first:
                    break
        base = first.splitlines()[0]
        assert base.startswith("http://127.0.0.1:") and base.endswith("/bot")
        async with httpx.AsyncClient() as http:
            me = (await http.get(base + "1:abc/getMe")).json()
            refused = await http.get(base + "2:xyz/getMe")
            said = await http.post(
                base.removesuffix("/bot") + "/_fake/message", json={"user_id": 5, "text": "hi"}
            )
        assert me["ok"] is True and me["result"]["is_bot"] is True
        assert refused.status_code == 401
        assert said.json()["update_id"] == 1
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0


def test_the_bridge_without_a_token_says_where_to_put_one(home: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "TELEGRAM_BOT_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_cascade", "bridge", "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in done.stderr and str(home / "bridge" / "token") in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
