"""Upgrades: stores written by release 0.1.0 (tests/fixtures/stores-0.1.0) opened by this release.

The fixtures are the files 0.1.0 wrote, committed before the schema changed,
so these tests read real old files rather than a schema recreated by hand.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_cascade.bridge.ledger import STEPS as LEDGER_STEPS
from mcp_cascade.bridge.ledger import Ledger
from mcp_cascade.bridge.outbox import STEPS as OUTBOX_STEPS
from mcp_cascade.bridge.outbox import UpdateOutbox
from mcp_cascade.migrations import StoreTooNew, migrate, version
from mcp_cascade.receive.store import STEPS, Store
from mcp_cascade.testing import ServeProcess
from tests.helpers import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "stores-0.1.0"
SESSION = "fixture-0123abcd"


def old_store(home: Path, name: str = "state.db") -> Path:
    """A copy of the 0.1.0 file where this release looks for it."""
    where = home / "sessions" / SESSION if name == "state.db" else home / "bridge"
    for folder in (where.parent, where):  # private, as serve makes them (a loose home is tightened, noisily)
        folder.mkdir(exist_ok=True, mode=0o700)
    shutil.copyfile(FIXTURES / name, where / name)
    return where / name


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return version(db)
    finally:
        db.close()


def test_the_fixtures_are_what_release_0_1_0_wrote() -> None:
    for name in ("state.db", "ledger.db", "outbox.db"):
        assert user_version(FIXTURES / name) == 0


@pytest.mark.anyio
async def test_pending_answers_in_a_0_1_0_store_are_delivered_once_after_the_upgrade(home: Path) -> None:
    path = old_store(home)
    async with ServeProcess(home, SESSION) as serve:
        await serve.wait_session()
        await serve.initialize()
        pushed = await serve.wait_channel(3)
    assert user_version(path) == len(STEPS)
    meta = {n["params"]["meta"]["response_id"]: n["params"]["meta"] for n in pushed}
    assert sorted(meta) == ["fixture:pending-1", "fixture:pending-2", "fixture:pushing"]
    # The one caught mid-push under 0.1.0 comes back flagged, the others plainly.
    assert [m.get("redelivered") for _, m in sorted(meta.items())] == [None, None, "true"]
    # Started again on the upgraded store: nothing is pushed a second time.
    async with ServeProcess(home, SESSION) as again:
        await again.wait_session()
        await again.initialize()
        await again.call_tool("cascade_status", {})  # a round trip after the start-up pushes
        assert again.channel() == []


def test_the_bridge_stores_of_0_1_0_keep_their_routes_and_offset(home: Path) -> None:
    ledger = Ledger.open(old_store(home, "ledger.db"))
    outbox = UpdateOutbox.open(old_store(home, "outbox.db"))
    try:
        assert ledger.chats() == [1001]
        assert ledger.session_of(1001, 77) == SESSION
        assert outbox.offset() == 502
        assert [e.update_id for e in outbox.pending()] == [501]
    finally:
        ledger.close()
        outbox.close()
    assert user_version(home / "bridge" / "ledger.db") == len(LEDGER_STEPS)
    assert user_version(home / "bridge" / "outbox.db") == len(OUTBOX_STEPS)


def test_a_store_from_a_newer_release_is_refused_and_left_untouched(home: Path) -> None:
    path = old_store(home)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(STEPS) + 1}")
    db.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreTooNew, match="newer mcp-cascade"):
        Store.open(path)
    with pytest.raises(StoreTooNew):
        Store.open_readonly(path)
    done = subprocess.run(
        [sys.executable, "-m", "mcp_cascade", "serve", "--home", str(home), "--session", SESSION],
        capture_output=True,
        text=True,
        input="",
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "newer than this release knows" in done.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_migration_that_fails_half_way_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    shutil.copyfile(FIXTURES / "state.db", path)
    db = sqlite3.connect(path, isolation_level=None)
    broken = (*STEPS, "CREATE INDEX half_done ON responses (tier);\nCREATE INDEX oops ON nowhere (x);")
    with pytest.raises(Exception, match="cannot upgrade"):
        migrate(db, path, broken)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert version(db) == 0
    assert "responses_received" not in indexes and "half_done" not in indexes
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone() == (4,)
    db.close()
