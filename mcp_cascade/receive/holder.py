"""Who holds a session: one live serve per session id, by kernel locks that die with their process.

Each session directory has two lock files, both taken with ``flock`` (the
kernel drops them when the holder exits, however it exits):

- ``live.lock`` is held while the serve runs and released as soon as it starts
  closing (stdin closed, a signal);
- ``serve.lock`` is held for the whole life of the serve and released last,
  after ``session.json`` is removed. Its content is the holder's pid.

A newcomer takes ``live.lock`` first. Held: a running serve has the session
(a second window in the same folder moves on to ``<base>-2``; an explicit id
waits, then is refused). Free while ``serve.lock`` is held: the holder is
closing, which is what a reconnect looks like (Claude Code starts the new
server while the old one closes), so the newcomer keeps ``live.lock`` and waits
for ``serve.lock``.

Locks are taken with :func:`mcp_cascade.locks.take` (a verified private
directory, no symlink followed), and a lock is only trusted while its path
still names the locked file: ``sessions prune`` renames a directory
away while holding both locks, and a serve that locked a file in it retries.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_cascade.durable import pid_alive, read_json
from mcp_cascade.errors import CascadeError
from mcp_cascade.locks import HeldFile, LockHeld, private_dir, take

LIVE_LOCK = "live.lock"
SERVE_LOCK = "serve.lock"
# A second, third... window in one folder: <base>-2 up to <base>-MAX_WINDOWS.
MAX_WINDOWS = 32
_POLL_S = 0.02


class SessionBusy(CascadeError):
    """The session is held by another live serve (after waiting for it to close)."""

    def __init__(self, session: str, pid: int | None, waited_s: float) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"session {session} is held by {who} (waited {waited_s:g} s for it to close);"
            " stop that serve or pick another --session"
        )
        self.session = session
        self.pid = pid


def _try(session_dir: Path, name: str, note: Mapping[str, object] | None = None) -> HeldFile | None:
    """One lock of a session, at once, or None when another process holds it."""
    while session_dir.is_dir():
        try:
            held = take(session_dir, name, note=note)
        except LockHeld:
            return None
        if held.in_place():
            return held
        held.release()  # locked a file that was pruned away meanwhile: lock the one there now
    return None


def holder_note(session_dir: Path) -> dict[str, Any]:
    """What the last holder noted in ``serve.lock``: its pid, folder and start (it outlives the holder)."""
    note = read_json(session_dir / SERVE_LOCK)
    return note if isinstance(note, dict) else {}


def holder_pid(session_dir: Path) -> int | None:
    """The pid noted in ``serve.lock`` by its holder (None when absent or unreadable)."""
    pid = holder_note(session_dir).get("pid")
    return pid if isinstance(pid, int) else None


@dataclass
class Hold:
    """A session held by this process: release it with :meth:`closing`, then :meth:`release`."""

    session: str
    dir: Path
    _live: HeldFile
    _serve: HeldFile
    waited_s: float = 0.0
    about: Mapping[str, str] = field(default_factory=dict)  # noted in serve.lock beside the pid

    def closing(self) -> None:
        """Let a reconnecting serve know it may take over as soon as this one is gone (idempotent)."""
        self._live.release()

    def release(self) -> None:
        """Give the session up (idempotent); the kernel does the same if the process dies."""
        self._live.release()
        self._serve.release()


Sleep = Callable[[float], None]


def _session_dir(session_dir: Path) -> None:
    """Create the session's directory 0700, or make it 0700 when a sender's ``mkdir -p`` left it open.

    A producer may create ``sessions/<id>/inbox`` before any serve ran for the
    id (its parents get the default mode). The directory is ours and under our
    own home, so it is tightened rather than refused; :func:`private_dir` then
    verifies it as for any lock.
    """
    session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # private_dir below says what is wrong, if anything
        fd = os.open(session_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if st.st_uid == os.geteuid() and st.st_mode & 0o077:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    private_dir(session_dir)


def _take(
    session_dir: Path, wait_s: float, *, running: bool, sleep: Sleep, about: Mapping[str, str]
) -> Hold | None:
    """Both locks of a session, waiting up to ``wait_s`` for a closing holder (or any, if ``running``)."""
    started = time.monotonic()
    while True:
        _session_dir(session_dir)  # again each time: ``sessions prune`` may have just removed it
        live = _try(session_dir, LIVE_LOCK)
        if live is not None:
            # Ours now; a holder still closing keeps serve.lock a moment longer.
            while True:
                serve = _try(session_dir, SERVE_LOCK, {"pid": os.getpid(), **about})
                if serve is not None:
                    waited = time.monotonic() - started
                    return Hold(session_dir.name, session_dir, live, serve, waited, about)
                if time.monotonic() - started >= wait_s:
                    live.release()
                    return None
                sleep(_POLL_S)
        if not running or time.monotonic() - started >= wait_s:
            return None
        sleep(_POLL_S)


def hold(
    home: Path,
    base: str,
    *,
    explicit: bool,
    wait_s: float,
    about: Mapping[str, str] | None = None,
    sleep: Sleep = time.sleep,
) -> Hold:
    """Hold ``base`` or, for a derived id whose first window is running, the next free ``<base>-N``.

    An explicit id waits up to ``wait_s`` for its holder to close, then raises
    :class:`SessionBusy`. A derived id waits only for a holder that is already
    closing (a reconnect); a holder that is running is another window.
    ``about`` is noted beside the pid in ``serve.lock`` (``sessions`` shows it
    for closed sessions too).
    """
    about = about or {}
    root = home / "sessions"
    if explicit:
        held = _take(root / base, wait_s, running=True, sleep=sleep, about=about)
        if held is None:
            raise SessionBusy(base, holder_pid(root / base), wait_s)
        return held
    for n in range(1, MAX_WINDOWS + 1):
        session_dir = root / (base if n == 1 else f"{base}-{n}")
        held = _take(session_dir, wait_s, running=False, sleep=sleep, about=about)
        if held is not None:
            return held
    raise SessionBusy(f"{base}-{MAX_WINDOWS}", None, 0.0)


def is_held(session_dir: Path) -> bool:
    """Whether a live process holds this session, without taking any lock (safe beside a starting serve)."""
    pid = holder_pid(session_dir)
    if pid is None or not pid_alive(pid):
        return False
    # flock has no "test" operation; /proc/locks lists every flock with the inode it covers (a live pid
    # alone could be a recycled one).
    try:
        ino = os.stat(session_dir / SERVE_LOCK).st_ino
        with open("/proc/locks", encoding="ascii") as fh:
            # Each line names the locked file as MAJOR:MINOR:INODE.
            return any(t.count(":") == 2 and t.endswith(f":{ino}") for line in fh for t in line.split())
    except OSError:
        return True  # no /proc: trust the live pid
