"""log_file under rotation: ``mv`` then SIGHUP while answers keep arriving; no line lost, none late.

This is what logrotate does without ``copytruncate`` (rename, then the
postrotate signal). serve is a real subprocess logging to a file; the load is
signed webhooks posted the whole time.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_cascade.testing import ServeProcess
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio

COUNT = 300


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file, each one parsed (a torn or non-JSON line fails the test)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_log_file_rotated_with_mv_and_sighup_under_load_loses_no_line(
    home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    rotated = tmp_path / "serve.log.1"
    args = ["--log-file", str(log), "--log-level", "info"]
    async with ServeProcess(home, "rotating", args=args) as serve:
        info = await serve.wait_session()
        await serve.initialize()
        assert serve.process is not None
        secret = (home / "secret").read_text().strip()
        posted = anyio.Event()
        halfway = anyio.Event()

        async def load() -> None:
            async with httpx.AsyncClient() as client:
                for n in range(COUNT):
                    data = body(id=f"rot:{n}", text=f"answer {n}")
                    raw = encode(data)
                    answer = await client.post(
                        info.webhook_url, content=raw, headers=sign(secret, data["id"], raw)
                    )
                    assert answer.status_code == 200, answer.text
                    if n == COUNT // 2:
                        halfway.set()
            posted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await halfway.wait()
            log.rename(rotated)  # logrotate's rename; serve keeps writing to the renamed file...
            serve.kill(signal.SIGHUP)  # ...until the postrotate signal makes it reopen the name
            with anyio.fail_after(15):
                while not (log.exists() and "log_reopened" in log.read_text()):  # noqa: ASYNC110 - a file
                    await anyio.sleep(0.01)
            size_at_reopen = rotated.stat().st_size
            await posted.wait()
        await serve.wait_channel(COUNT)
        # Still writing, still to the new file.
        assert serve.process.returncode is None
    old, new = lines(rotated), lines(log)
    # Nothing reached the old file after serve reopened the log.
    assert rotated.stat().st_size == size_at_reopen
    assert new[0]["event"] == "log_reopened"
    pushed = [r["response_id"] for r in old + new if r["event"] == "pushed"]
    assert sorted(pushed) == sorted(f"rot:{n}" for n in range(COUNT))
    # Both files took part: the rotation happened mid-load.
    assert any(r["event"] == "pushed" for r in old) and any(r["event"] == "pushed" for r in new)
    # The serve's last lines (after stdin closed) are in the new file too.
    assert new[-1]["event"] == "stopped"
