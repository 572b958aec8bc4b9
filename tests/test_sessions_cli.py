"""``mcp-cascade sessions`` and ``sessions prune`` on a home with live, pending and stale sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_cascade.errors import ConfigError
from mcp_cascade.receive.lifecycle import parse_age
from mcp_cascade.receive.store import Store
from mcp_cascade.response import from_dict
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.testing import ServeProcess
from tests.helpers import ROOT, body

DAY = 86400.0


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_cascade", "sessions", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )


def closed_session(home: Path, name: str, *, pending: bool, age_days: float) -> None:
    """A session a serve used and closed: a store (one answer, pending or delivered), an inbox, an age."""
    paths = SessionPaths(home, name)
    store = Store.open(paths.state_db)
    store.accept(from_dict(body(id=f"{name}:1", session=name)), 1)
    if not pending:
        store.mark_delivered([1])
    store.close()
    for sub in ("new", "cur", "failed", "tmp"):
        (paths.inbox / sub).mkdir(parents=True, exist_ok=True)
    then = time.time() - age_days * DAY
    for path in [*paths.dir.rglob("*"), paths.dir]:
        os.utime(path, (then, then))


def listed(home: Path) -> dict[str, dict[str, Any]]:
    done = cli(home, "--json")
    assert done.returncode == 0, done.stderr
    return {e["session"]: e for e in json.loads(done.stdout)}


@pytest.mark.anyio
async def test_sessions_lists_live_pending_and_stale_and_prune_removes_only_old_stale_ones(
    home: Path, tmp_path: Path
) -> None:
    closed_session(home, "old-stale", pending=False, age_days=40)
    closed_session(home, "new-stale", pending=False, age_days=2)
    closed_session(home, "old-pending", pending=True, age_days=40)
    project = tmp_path / "shop"
    project.mkdir()
    async with ServeProcess(home, "was-here", cwd=project) as earlier:
        ran = await earlier.wait_session()
    async with ServeProcess(home, "running", cwd=project) as serve:
        await serve.wait_session()
        assert serve.process is not None
        # An old live session is never pruned, whatever its age.
        closed_session(home, "running", pending=False, age_days=400)

        found = listed(home)
        assert {k: v["state"] for k, v in found.items()} == {
            "running": "live",
            "old-pending": "pending",
            "new-stale": "stale",
            "old-stale": "stale",
            "was-here": "stale",
        }
        assert found["running"]["pid"] == serve.process.pid
        assert found["running"]["folder"] == str(project) and found["running"]["started_at"]
        assert found["old-pending"]["pending_ids"] == ["old-pending:1"]
        # A closed session still says where and when it last ran.
        assert found["was-here"]["folder"] == str(project)
        assert found["was-here"]["started_at"] == ran.started_at
        assert cli(home, "--pids").stdout.split() == [str(serve.process.pid)]

        dry = cli(home, "prune", "--dry-run")
        assert dry.returncode == 0
        assert "would remove old-stale" in dry.stdout and "kept old-pending" in dry.stdout
        assert set(listed(home)) == set(found)  # nothing removed

        done = cli(home, "prune", "--older-than", "30d")
        assert done.returncode == 0, done.stderr
        assert set(listed(home)) == {"running", "old-pending", "new-stale", "was-here"}
        assert "kept old-pending: 1 pending answer(s); --force drops them" in done.stdout

        forced = cli(home, "prune", "--force")
        assert "dropped 1 pending answer(s) of old-pending:\n  old-pending:1" in forced.stdout
        assert set(listed(home)) == {"running", "new-stale", "was-here"}
        assert SessionPaths(home, "running").session_json.exists()

        everything = cli(home, "prune", "--older-than", "0")
        assert set(listed(home)) == {"running"}, everything.stdout
    assert not [p.name for p in (home / "sessions").iterdir() if p.name.startswith(".pruned")]


def test_an_age_is_read_with_its_unit_and_a_bad_one_is_refused() -> None:
    assert parse_age("30d") == 30 * DAY
    assert parse_age("12h") == 12 * 3600
    assert parse_age("90") == 90
    with pytest.raises(Exception, match="older-than"):
        parse_age("thirty days")


@given(st.text(st.characters(codec=None), max_size=20))
def test_any_age_text_is_read_or_refused_with_the_flag_named(raw: str) -> None:
    try:
        seconds = parse_age(raw)
    except ConfigError as exc:
        assert exc.key == "older-than"
    else:
        assert seconds >= 0
