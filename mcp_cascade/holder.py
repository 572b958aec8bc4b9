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

Lock files are opened with ``O_NOFOLLOW``, and a lock is only trusted while
its path still names the locked file: ``sessions prune`` renames a directory
away while holding both locks, and a serve that locked a file in it retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mcp_cascade.errors import CascadeError, ConfigError

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


def lock_path(session_dir: Path, name: str) -> Path:
    """Where a session's lock file lives (one place, so a private runtime directory can take it over)."""
    return session_dir / name


def try_lock(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path`` (created 0600, never through a symlink), or None when held."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return None  # the directory is being pruned away
        except OSError as exc:  # ELOOP: a symlink planted where the lock belongs
            raise ConfigError("home", f"{path} is not a regular file: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # locked a file that was renamed or removed meanwhile: lock the one there now
        if not path.parent.is_dir():
            return None


def holder_pid(session_dir: Path) -> int | None:
    """The pid written into ``serve.lock`` by its holder (None when absent or not yet written)."""
    try:
        raw = lock_path(session_dir, SERVE_LOCK).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(raw) if raw.isdigit() else None


@dataclass
class Hold:
    """A session held by this process: release it with :meth:`closing`, then :meth:`release`."""

    session: str
    dir: Path
    _live: int | None
    _serve: int | None
    waited_s: float = 0.0
    _closed: bool = field(default=False, repr=False)

    def closing(self) -> None:
        """Let a reconnecting serve know it may take over as soon as this one is gone."""
        if self._live is not None:
            os.close(self._live)
            self._live = None

    def release(self) -> None:
        """Give the session up (idempotent); the kernel does the same if the process dies."""
        self.closing()
        if self._serve is not None:
            os.close(self._serve)
            self._serve = None


Sleep = Callable[[float], None]


def _take(session_dir: Path, wait_s: float, *, running: bool, sleep: Sleep) -> Hold | None:
    """Both locks of a session, waiting up to ``wait_s`` for a closing holder (or any, if ``running``)."""
    session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.monotonic()
    while True:
        live = try_lock(lock_path(session_dir, LIVE_LOCK))
        if live is not None:
            # Ours now; a holder still closing keeps serve.lock a moment longer.
            while True:
                serve = try_lock(lock_path(session_dir, SERVE_LOCK))
                if serve is not None:
                    os.ftruncate(serve, 0)
                    os.pwrite(serve, f"{os.getpid()}\n".encode(), 0)
                    waited = time.monotonic() - started
                    return Hold(session_dir.name, session_dir, live, serve, waited)
                if time.monotonic() - started >= wait_s:
                    os.close(live)
                    return None
                sleep(_POLL_S)
        if not running or time.monotonic() - started >= wait_s:
            return None
        sleep(_POLL_S)


def hold(home: Path, base: str, *, explicit: bool, wait_s: float, sleep: Sleep = time.sleep) -> Hold:
    """Hold ``base`` or, for a derived id whose first window is running, the next free ``<base>-N``.

    An explicit id waits up to ``wait_s`` for its holder to close, then raises
    :class:`SessionBusy`. A derived id waits only for a holder that is already
    closing (a reconnect); a holder that is running is another window.
    """
    root = home / "sessions"
    if explicit:
        held = _take(root / base, wait_s, running=True, sleep=sleep)
        if held is None:
            raise SessionBusy(base, holder_pid(root / base), wait_s)
        return held
    for n in range(1, MAX_WINDOWS + 1):
        held = _take(root / (base if n == 1 else f"{base}-{n}"), wait_s, running=False, sleep=sleep)
        if held is not None:
            return held
    raise SessionBusy(f"{base}-{MAX_WINDOWS}", None, 0.0)


def is_held(session_dir: Path) -> bool:
    """Whether a live process holds this session, without taking any lock (safe beside a starting serve)."""
    pid = holder_pid(session_dir)
    if pid is None or not lock_path(session_dir, SERVE_LOCK).exists():
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, 0)
        return _locked_by_someone(session_dir)
    return False


def _locked_by_someone(session_dir: Path) -> bool:
    # flock has no "test" operation; /proc/locks lists every flock with the inode it covers.
    try:
        ino = os.stat(lock_path(session_dir, SERVE_LOCK)).st_ino
        with open("/proc/locks", encoding="ascii") as fh:
            return any(line.split()[5].endswith(f":{ino}") for line in fh if len(line.split()) > 5)
    except OSError:
        return True  # no /proc: trust the live pid
