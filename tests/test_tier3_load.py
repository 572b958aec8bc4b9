"""Tier 3 end to end under load and crashes, once per watcher backend.

Thousands of files from another process; SIGKILL at random moments.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from mcp_cascade.inbox import enqueue
from mcp_cascade.receive.store import Store
from mcp_cascade.response import from_dict
from mcp_cascade.testing import ServeProcess
from tests.helpers import body
from tests.tier3 import (  # noqa: F401 - forced_backend is an autouse fixture
    BURST_PRODUCER,
    drained,
    forced_backend,
    ids,
    inbox_of,
    producer_env,
)

pytestmark = pytest.mark.anyio

BURST = int(os.environ.get("TIER3_BURST", "3000"))


async def test_a_burst_of_thousands_of_files_from_another_process_loses_none_and_keeps_order(
    home: Path,
) -> None:
    inbox = inbox_of(home, "file-h")
    async with ServeProcess(home, "file-h") as serve:
        await serve.wait_session()
        await serve.initialize()
        producer = await anyio.run_process(
            [sys.executable, "-c", BURST_PRODUCER, str(inbox), str(BURST)], env=producer_env()
        )
        assert producer.returncode == 0, producer.stderr
        await serve.wait_channel(BURST, timeout=120)
        assert ids(serve) == [f"burst:{n}" for n in range(BURST)]
        assert await drained(inbox)


# --- crashes at random moments ---------------------------------------------------------------------

KILLS = int(os.environ.get("TIER3_KILLS", "4"))


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_nothing_and_repeats_only_flagged_redeliveries(
    home: Path,
) -> None:
    session = "file-k"
    inbox = inbox_of(home, session)
    count = 400
    rng = random.Random(7)
    producer = await anyio.open_process(
        [sys.executable, "-c", BURST_PRODUCER, str(inbox), str(count)], env=producer_env()
    )
    try:
        async with ServeProcess(home, session) as serve:
            for _ in range(KILLS):
                await serve.wait_session()
                await serve.initialize()
                with anyio.move_on_after(rng.uniform(0.05, 0.6)):
                    await serve.wait_channel(count)
                serve.kill()
                await serve.wait_exit()
                await serve.start()
            await serve.wait_session()
            await serve.initialize()
            await producer.wait()
            enqueue(inbox, from_dict(body(id="k:marker", text="marker")))
            await serve.wait_for(lambda: "k:marker" in ids(serve), timeout=120)
            assert await drained(inbox)
    finally:
        if producer.returncode is None:
            producer.kill()
        await producer.wait()
    seen: set[str] = set()
    for note in serve.channel():
        rid = note["params"]["meta"]["response_id"]
        if rid in seen:  # a repeat only ever comes from the crash window, and says so
            assert note["params"]["meta"].get("redelivered") == "true", rid
        seen.add(rid)
    store = Store.open(home / "sessions" / session / "state.db")
    try:
        stored = {f"burst:{n}": store.find(f"burst:{n}") for n in range(count)}
    finally:
        store.close()
    assert all(len(rows) == 1 for rows in stored.values()), "every file reached the store exactly once"
    assert sorted(set(stored) - seen) == [], "recorded in the store but never written to the client"
