"""Lock files and the private runtime directory: nobody else can plant, redirect or block them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mcp_cascade import locks
from mcp_cascade.bridge.instance import AlreadyRunning, acquire, fingerprint
from tests.other_user import ATTACKER_UID, as_attacker, needs_second_uid

TOKEN = "123456:AAH-lock-test-token-0123456789"


@needs_second_uid
def test_a_lock_directory_planted_in_tmp_by_another_user_neither_blocks_nor_redirects_the_bridge(
    home: Path, tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 1: no XDG_RUNTIME_DIR; another account plants the lock directory and a symlink in it."""
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    precious = tmp_path / "precious"
    precious.write_text("the victim's file\n")
    fp = fingerprint(TOKEN)
    planted = shared / f"mcp-cascade-{os.getuid()}"
    as_attacker(f"mkdir -m 777 {planted}; ln -s {precious} {planted}/bridge-{fp}.lock")
    held = acquire(home, TOKEN, {})
    try:
        assert precious.read_text() == "the victim's file\n"
        assert all(not str(f.path).startswith(str(shared)) for f in held.files)
    finally:
        held.release()


@needs_second_uid
def test_a_runtime_directory_made_by_another_user_is_refused_and_nothing_is_written_through_it(
    home: Path, tmp_path: Path, shared: Path
) -> None:
    """Finding 1 where the runtime base is shared: the planted directory is refused with the reason."""
    precious = tmp_path / "precious"
    precious.write_text("the victim's file\n")
    fp = fingerprint(TOKEN)
    for name in ("mcp-cascade", f"mcp-cascade-{os.getuid()}"):
        as_attacker(f"mkdir -m 777 {shared}/{name}; ln -s {precious} {shared}/{name}/bridge-{fp}.lock")
    with pytest.raises(locks.UnsafeDirectory, match=f"owned by uid {ATTACKER_UID}"):
        acquire(home, TOKEN, {"XDG_RUNTIME_DIR": str(shared)}).release()
    assert precious.read_text() == "the victim's file\n"


def test_a_symlink_planted_as_the_lock_file_is_not_followed(tmp_path: Path) -> None:
    private = locks.private_dir(tmp_path / "run")
    precious = tmp_path / "precious"
    precious.write_text("keep")
    (private / "x.lock").symlink_to(precious)
    with pytest.raises(locks.UnsafeDirectory, match=r"x\.lock"):
        locks.take(private, "x.lock", note={"pid": 1})
    assert precious.read_text() == "keep"


def test_a_directory_open_to_others_or_a_symlinked_one_is_refused_with_the_fix(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    with pytest.raises(locks.UnsafeDirectory, match="mode 0755"):
        locks.private_dir(loose)
    real = locks.private_dir(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(locks.UnsafeDirectory, match="is a symlink"):
        locks.take(tmp_path / "link", "x.lock")
    with pytest.raises(ValueError, match="one path component"):
        locks.take(real, "../x.lock")


def test_the_runtime_directory_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for env in ({"XDG_RUNTIME_DIR": str(tmp_path)}, {}, {"XDG_RUNTIME_DIR": "relative/dir"}):
        path = locks.runtime_dir(env)
        assert path.stat().st_mode & 0o777 == 0o700
        assert path.stat().st_uid == os.geteuid()


def test_a_held_lock_names_its_holder_and_frees_when_its_process_dies(tmp_path: Path) -> None:
    private = locks.private_dir(tmp_path / "run")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from mcp_cascade import locks\n"
            f"locks.take(Path({str(private)!r}), 'x.lock', note={{'pid': 77, 'who': 'child'}})\n"
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        with pytest.raises(locks.LockHeld) as held:
            locks.take(private, "x.lock", wait_s=0.2)
        assert held.value.holder == {"pid": 77, "who": "child"}
    finally:
        child.kill()
        child.wait(timeout=10)
    with locks.take(private, "x.lock", wait_s=10, note={"pid": os.getpid()}) as mine:
        assert mine.path == private / "x.lock"


def test_the_bridge_lock_refusal_still_names_the_holder(home: Path, tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    held = acquire(home, TOKEN, env)
    try:
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}, home {home}"):
            acquire(tmp_path / "other", TOKEN, env)
    finally:
        held.release()
