"""kill -9 of serve at random instants while responses are posted: nothing acknowledged lost or repeated."""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.sessions import read_session
from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio


async def test_every_acknowledged_response_is_pushed_once_across_sigkills(home: Path) -> None:
    rng = random.Random(20261129)
    acknowledged: list[str] = []
    attempts = 0
    async with ServeProcess(home, "crash") as serve, httpx.AsyncClient(timeout=0.5) as client:
        await serve.wait_session()
        await serve.initialize()
        secret = (home / "secret").read_text().strip()
        for round_no in range(4):
            info = read_session(home, "crash")
            assert info is not None
            stop = anyio.Event()

            async def post_stream(url: str, round_no: int = round_no, stop: anyio.Event = stop) -> None:
                nonlocal attempts
                n = 0
                while not stop.is_set():
                    rid = f"crash:{round_no}:{n}"
                    n += 1
                    raw = encode(body(id=rid, text=rid))
                    attempts += 1
                    try:
                        answer = await client.post(url, content=raw, headers=sign(secret, rid, raw))
                    except httpx.HTTPError:
                        continue  # not acknowledged: a sender would fall back to another tier
                    if answer.status_code in (200, 202):
                        acknowledged.append(rid)

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(post_stream, info.webhook_url)
                await anyio.sleep(rng.uniform(0.2, 0.8))  # a random instant to crash at
                serve.kill(signal.SIGKILL)
                await serve.wait_exit()
                await anyio.sleep(0.05)  # let posts hit the dead port
                stop.set()
            await serve.start()
            await serve.wait_session()
            await serve.initialize()
        await serve.wait_for(
            lambda: {n["params"]["meta"]["response_id"] for n in serve.channel()} >= set(acknowledged),
            timeout=30,
        )
    notes = serve.channel()
    plain = Counter(
        n["params"]["meta"]["response_id"] for n in notes if "redelivered" not in n["params"]["meta"]
    )
    again = Counter(n["params"]["meta"]["response_id"] for n in notes if "redelivered" in n["params"]["meta"])
    assert len(acknowledged) > 100, f"only {len(acknowledged)} of {attempts} posts acknowledged"
    assert set(acknowledged) <= set(plain) | set(again)
    assert max(plain.values()) == 1, "a response was pushed twice without the redelivered flag"
    assert all(n == 1 for n in again.values())
    assert serve.bad_lines == []
