"""Homes are private: a home made loose (``mkdir -p`` under umask 022) is tightened, and SQLite's
WAL/SHM files never carry answers to another account."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anyio
import pytest

from mcp_cascade.cli import main
from mcp_cascade.home import ensure_home
from mcp_cascade.testing import ServeProcess
from mcp_cascade.testing.fake_api import FakeTelegram
from tests.bridge_helpers import ALICE, allow, bridge, greet
from tests.other_user import attacker_argv, needs_second_uid

pytestmark = pytest.mark.anyio
ANSWER = "the-answer-only-the-owner-may-read"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@needs_second_uid
async def test_another_user_cannot_read_answers_from_a_home_made_with_mkdir_p(
    shared: Path, tmp_path: Path
) -> None:
    """Finding 3: the old docs' ``mkdir -p ~/.mcp-cascade/bridge`` left bridge/ 0755 and the WAL 0644."""
    home = shared / "home"
    old = os.umask(0o022)
    try:
        (home / "bridge").mkdir(parents=True)
    finally:
        os.umask(old)
    assert _mode(home) == _mode(home / "bridge") == 0o755
    allow(home, ALICE.id)
    async with (
        FakeTelegram().serving() as fake,
        ServeProcess(home, "priv", stderr_path=tmp_path / "serve.stderr") as serve,
    ):
        await serve.wait_session()
        await serve.initialize()
        async with bridge(home, fake):
            await greet(fake)
            fake.message(ALICE, ANSWER)
            await serve.wait_channel(1)
            snoop = await anyio.run_process(
                attacker_argv("/bin/sh", "-c", f"cat {home}/bridge/*.db-wal; grep -rl {ANSWER} {home}"),
                check=False,
            )
            assert ANSWER.encode() not in snoop.stdout
            for path in [home, *home.rglob("*")]:
                assert not _mode(path) & 0o077, f"{path} is {_mode(path):04o}"
    assert "home_tightened" in (tmp_path / "serve.stderr").read_text()


def test_a_loose_home_is_tightened_and_a_private_one_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "sessions" / "s" / "inbox").mkdir(parents=True, mode=0o755)
    home.chmod(0o755)
    (home / "sessions").chmod(0o755)
    wal = home / "sessions" / "s" / "state.db-wal"
    wal.write_text("x")
    wal.chmod(0o644)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not ours to change")
    elsewhere.chmod(0o644)
    (home / "link").symlink_to(elsewhere)
    tightened = ensure_home(home)
    assert str(wal) in tightened and str(home) in tightened
    assert _mode(home) == 0o700 and _mode(home / "sessions") == 0o700 and _mode(wal) == 0o600
    assert _mode(elsewhere) == 0o644  # a symlink inside is never followed
    assert ensure_home(home) == []


def test_a_command_run_in_process_leaves_the_callers_umask_alone(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert main(["config", "--home", str(tmp_path / "h"), "--breaker-threshold", "-3"], env={}) == 2
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(old)
