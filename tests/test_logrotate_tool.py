"""The logrotate stanza of docs/observability.md, run by the real ``logrotate`` against a real serve."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from mcp_cascade.testing import ServeProcess
from tests.helpers import ROOT, body, encode, sign

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        shutil.which("logrotate") is None, reason="logrotate is not installed (.ci/run installs it)"
    ),
]

DOC = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
STANZA = re.search(r"<!-- logrotate stanza[^\n]*-->\n```text\n(.*?)```", DOC, flags=re.S)


def pushed(path: Path) -> list[str]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["response_id"] for r in records if r["event"] == "pushed"]


async def test_the_documented_logrotate_stanza_rotates_a_running_serve_without_losing_a_line(
    home: Path, tmp_path: Path
) -> None:
    assert STANZA is not None, "the stanza is missing from docs/observability.md"
    log = home / "mcp-cascade.log"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(
        STANZA.group(1)
        .replace("/home/you/.mcp-cascade/mcp-cascade.log", str(log))
        .replace(
            "mcp-cascade sessions --pids", f"{sys.executable} -m mcp_cascade sessions --pids --home {home}"
        )
    )
    (home / "config.toml").write_text(f'log_file = "{log}"\n')
    async with ServeProcess(home, "rotated") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        secret = (home / "secret").read_text().strip()

        async def post(n: int) -> None:
            data = body(id=f"lr:{n}")
            raw = encode(data)
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    info.webhook_url, content=raw, headers=sign(secret, data["id"], raw)
                )
            assert answer.status_code == 200

        for n in range(20):
            await post(n)
        await serve.wait_channel(20)
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                ["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
        assert done.returncode == 0, done.stderr
        rotated = home / "mcp-cascade.log.1"  # delaycompress: the newest generation stays plain
        with anyio.fail_after(15):
            while "log_reopened" not in log.read_text():  # noqa: ASYNC110 - a file has no event to wait on
                await anyio.sleep(0.01)
        size = rotated.stat().st_size
        for n in range(20, 40):
            await post(n)
        await serve.wait_channel(40)
    assert rotated.stat().st_size == size
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert sorted(pushed(rotated) + pushed(log)) == sorted(f"lr:{n}" for n in range(40))
    assert pushed(log) == [f"lr:{n}" for n in range(20, 40)]
