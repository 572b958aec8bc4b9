"""Session locks between real processes: a running holder, a closing one, a dead one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mcp_cascade.inbox import ensure_inbox
from mcp_cascade.locks import UnsafeDirectory
from mcp_cascade.receive.holder import Hold, SessionBusy, hold, holder_pid, is_held

# A holder in another process: takes the session, says so, closes on the first line, exits on the second.
_HOLDER = """
import sys
from pathlib import Path
from mcp_cascade.locks import UnsafeDirectory
from mcp_cascade.inbox import ensure_inbox
from mcp_cascade.receive.holder import hold
held = hold(Path(sys.argv[1]), sys.argv[2], explicit=True, wait_s=0)
print(held.session, flush=True)
sys.stdin.readline()
held.closing()
print("closing", flush=True)
sys.stdin.readline()
"""


@contextmanager
def other_process(home: Path, session: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(home), session],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == session
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def say(proc: subprocess.Popen[str], expect: str | None = None) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    if expect is not None:
        assert proc.stdout.readline().strip() == expect


def test_a_second_window_takes_the_next_suffix_while_the_first_runs(home: Path) -> None:
    with other_process(home, "shop-1234abcd") as first:
        assert is_held(home / "sessions" / "shop-1234abcd")
        assert holder_pid(home / "sessions" / "shop-1234abcd") == first.pid
        second = hold(home, "shop-1234abcd", explicit=False, wait_s=5)
        third = hold(home, "shop-1234abcd", explicit=False, wait_s=5)
        assert (second.session, third.session) == ("shop-1234abcd-2", "shop-1234abcd-3")
        third.release()
        assert hold(home, "shop-1234abcd", explicit=False, wait_s=5).session == "shop-1234abcd-3"
        second.release()


def test_an_explicit_id_held_by_a_running_process_is_refused_naming_its_pid(home: Path) -> None:
    with other_process(home, "pinned") as holder, pytest.raises(SessionBusy) as refused:
        hold(home, "pinned", explicit=True, wait_s=0.2)
    assert f"held by pid {holder.pid}" in str(refused.value)


def test_a_reconnect_waits_for_the_closing_holder_and_keeps_the_id(home: Path) -> None:
    with other_process(home, "shop-1234abcd") as old:
        say(old, "closing")  # stdin closed on the old server; it is still tearing down
        got: list[Hold] = []
        taker = threading.Thread(
            target=lambda: got.append(hold(home, "shop-1234abcd", explicit=False, wait_s=30))
        )
        taker.start()
        # While the old one has not exited, the newcomer waits rather than taking "-2".
        taker.join(0.3)
        assert taker.is_alive() and not got
        say(old)
        old.wait()
        taker.join(30)
        assert [h.session for h in got] == ["shop-1234abcd"]
        assert holder_pid(home / "sessions" / "shop-1234abcd") == os.getpid()
        got[0].release()


def test_a_killed_holder_leaves_the_session_free_at_once(home: Path) -> None:
    with other_process(home, "pinned") as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert not is_held(home / "sessions" / "pinned")
        assert hold(home, "pinned", explicit=True, wait_s=0).session == "pinned"


def test_a_lock_file_that_is_a_symlink_is_not_followed(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (home / "sessions" / "pinned").mkdir(parents=True, mode=0o700)
    (home / "sessions" / "pinned" / "live.lock").symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="cannot open lock"):
        hold(home, "pinned", explicit=True, wait_s=0)
    assert not target.exists()


def test_a_session_folder_a_sender_created_open_is_made_private_and_held(home: Path) -> None:
    """A sender may write into a session's inbox before its first serve; older senders used mkdir -p."""
    inbox = home / "sessions" / "early" / "inbox" / "new"
    inbox.mkdir(parents=True, mode=0o700)  # its parents get the default mode (0755 under umask 022)
    (home / "sessions" / "early").chmod(0o755)
    held = hold(home, "early", explicit=True, wait_s=0)
    assert oct((home / "sessions" / "early").stat().st_mode & 0o777) == "0o700"
    held.release()


def test_the_inbox_of_a_session_that_never_ran_is_created_private(home: Path) -> None:
    ensure_inbox(home / "sessions" / "fresh" / "inbox")
    for path in (home / "sessions", home / "sessions" / "fresh", home / "sessions" / "fresh" / "inbox"):
        assert oct(path.stat().st_mode & 0o777) == "0o700", path
