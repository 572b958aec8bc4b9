"""Two Claude Code windows in one folder: two ``serve`` processes started as ``.mcp.json`` starts them.

Real subprocesses, no ``--session``: each derives its id from the folder. The
first keeps the folder's id, the second gets ``<id>-2``; answers for one never
reach the other; closing one leaves the other whole; an explicit id held by a
live serve is refused with one line; a reconnect keeps the id.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import from_dict
from mcp_cascade.sessions import SessionPaths, read_session, session_id_for
from mcp_cascade.testing import ServeProcess
from tests.helpers import ROOT, body, encode, run_inspect, sign

pytestmark = pytest.mark.anyio

FAST = ["--file-rescan-ms", "100"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder both windows are opened in."""
    path = tmp_path / "shop"
    path.mkdir()
    return path


def ids(serve: ServeProcess) -> list[str]:
    return [n["params"]["meta"]["response_id"] for n in serve.channel()]


async def post(home: Path, session: str, data: dict[str, object]) -> int:
    info = read_session(home, session)
    assert info is not None
    raw = encode(data)
    secret = (home / "secret").read_text().strip()
    async with httpx.AsyncClient() as client:
        answer = await client.post(info.webhook_url, content=raw, headers=sign(secret, str(data["id"]), raw))
    return answer.status_code


async def to_inbox(home: Path, session: str, response_id: str) -> None:
    response = from_dict(body(id=response_id, session=session))
    await anyio.to_thread.run_sync(enqueue, SessionPaths(home, session).inbox, response)


async def test_two_windows_in_one_folder_get_their_own_sessions_and_answers(
    home: Path, project: Path
) -> None:
    base = session_id_for(project)
    async with ServeProcess(home, None, cwd=project, args=FAST) as first:
        one = await first.wait_session()
        await first.initialize()
        async with ServeProcess(home, None, cwd=project, args=FAST) as second:
            two = await second.wait_session()
            await second.initialize()
            assert (one.session_id, two.session_id) == (base, base + "-2")
            assert first.process is not None and second.process is not None
            assert (one.pid, two.pid) == (first.process.pid, second.process.pid)
            assert (one.cwd, two.cwd) == (str(project), str(project))
            assert (one.label, two.label) == ("shop", "shop #2")
            # The operator's view tells the two windows apart: folder, start time, process.
            status = await anyio.to_thread.run_sync(lambda: run_inspect(home, "status", "--json"))
            views = {v["session"]: v for v in json.loads(status.stdout)["sessions"]}
            assert [views[s]["liveness"] for s in (base, base + "-2")] == ["live", "live"]
            assert [views[s]["pid"] for s in (base, base + "-2")] == [one.pid, two.pid]
            assert [views[s]["folder"] for s in (base, base + "-2")] == [str(project)] * 2
            assert views[base]["started_at"] == one.started_at
            assert views[base + "-2"]["started_at"] == two.started_at

            assert await post(home, base, body(id="w:1", session=base)) == 200
            assert await post(home, base + "-2", body(id="w:2", session=base + "-2")) == 200
            # An answer addressed to one window never lands in the other, even at the wrong door.
            assert await post(home, base, body(id="w:x", session=base + "-2")) == 422
            await to_inbox(home, base, "f:1")
            await to_inbox(home, base + "-2", "f:2")
            await first.wait_channel(2)
            await second.wait_channel(2)

        # Window two closed: window one keeps its session.json and keeps receiving, by both paths.
        assert not SessionPaths(home, base + "-2").session_json.exists()
        still = read_session(home, base)
        assert still is not None and still.pid == first.process.pid
        assert await post(home, base, body(id="w:3", session=base)) == 200
        await to_inbox(home, base, "f:3")
        await first.wait_channel(4)
        assert sorted(ids(first)) == ["f:1", "f:3", "w:1", "w:3"]
        assert sorted(ids(second)) == ["f:2", "w:2"]
        # The second window drained its own inbox before it closed; nothing was left for the first.
        assert not list((SessionPaths(home, base + "-2").inbox / "new").iterdir())


async def test_an_explicit_session_held_by_a_live_serve_is_refused_in_one_line(home: Path) -> None:
    async with ServeProcess(home, "pinned", args=FAST) as holder:
        await holder.wait_session()
        assert holder.process is not None
        refused = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "mcp_cascade",
                "serve",
                "--home",
                str(home),
                "--session",
                "pinned",
                "--session-wait-ms",
                "300",
            ],
            input=b"",
            check=False,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        lines = refused.stderr.decode().splitlines()
        assert refused.returncode != 0
        assert refused.stdout == b""
        assert len(lines) == 1, lines
        assert f"held by pid {holder.process.pid}" in lines[0]
        still = read_session(home, "pinned")
        assert still is not None and still.pid == holder.process.pid


async def test_a_reconnect_keeps_the_folder_id_and_delivers_what_came_in_between(
    home: Path, project: Path
) -> None:
    base = session_id_for(project)
    async with ServeProcess(home, None, cwd=project, args=FAST) as old:
        await old.wait_session()
        await old.initialize()
        # Claude Code's /mcp reconnect: the old server is closing while the new one starts.
        await old.close_stdin()
        async with ServeProcess(home, None, cwd=project, args=FAST) as new:
            assert await old.wait_exit() == 0
            await to_inbox(home, base, "between:1")
            info = await new.wait_session()
            assert info.session_id == base
            await new.initialize()
            await new.wait_channel(1)
            assert ids(new) == ["between:1"]
