"""Private directories and inter-process lock files: the one place that takes a lock on disk.

Every lock this package takes goes through :func:`take`. The directory a lock
lives in is opened without following a link and checked on the open
descriptor (a directory, owned by us, no group or other bits) before anything
is created in it; the lock file is then opened relative to that descriptor with
``O_NOFOLLOW | O_CREAT``, so neither a planted directory nor a planted symlink
can redirect or block it. The file holds a small JSON note naming the holder,
which a refused contender reads (it is never truncated by a contender).

Per-user runtime files (the one-bridge-per-token locks) live in
:func:`runtime_dir`: ``$XDG_RUNTIME_DIR/mcp-cascade``, else
``~/.cache/mcp-cascade``; never a predictable name in a shared ``/tmp`` that
another account could create first.

POSIX uses ``flock``; Windows ``msvcrt.locking`` on one byte far past the note
(so the note stays readable). Both are imported where used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp_cascade.errors import CascadeError

_WINDOWS = sys.platform == "win32"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_WIN_LOCK_OFFSET = 1 << 30
_POLL_S = 0.05


class UnsafeDirectory(CascadeError):
    """A directory that is not ours alone (another owner, group/other access, or a symlink)."""


class LockHeld(CascadeError):
    """Another process holds the lock; ``holder`` is its note (``{}`` when unreadable)."""

    def __init__(self, path: Path, holder: Mapping[str, Any]) -> None:
        super().__init__(f"{path} is held by pid {holder.get('pid', '?')}")
        self.path = path
        self.holder = dict(holder)


def runtime_dir(env: Mapping[str, str]) -> Path:
    """This user's private runtime directory, created 0700 and verified (UnsafeDirectory if not ours)."""
    runtime = Path(env.get("XDG_RUNTIME_DIR") or "relative")
    if runtime.is_absolute() and runtime.is_dir():
        path = runtime / "mcp-cascade"
    else:
        path = Path.home() / ".cache" / "mcp-cascade"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return private_dir(path)


def private_dir(path: Path) -> Path:
    """Create ``path`` 0700 if missing, then verify it is a real directory, ours, without group/other bits."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    fd = _open_dir(path)
    if fd is not None:
        os.close(fd)
    return path


def _open_dir(path: Path) -> int | None:
    """A descriptor of ``path``, opened without following a link and checked on the descriptor.

    Windows opens no directory descriptors: there the path is checked with lstat
    (a real directory, not a link or junction) and None returned.
    """
    if _WINDOWS:
        try:
            st = path.lstat()
        except OSError as exc:
            raise UnsafeDirectory(f"cannot open {path}: {exc.strerror or exc}") from None
        junction = getattr(path, "is_junction", lambda: False)()  # Python 3.12+
        if stat.S_ISLNK(st.st_mode) or junction:
            raise UnsafeDirectory(f"{path} is a link; remove it and start again")
        if problem := _problem(st):
            raise UnsafeDirectory(f"{path} {problem}; refusing to keep locks or runtime files there")
        return None
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    except OSError as exc:
        if path.is_symlink():
            raise UnsafeDirectory(f"{path} is a symlink; remove it (rm {path}) and start again") from None
        raise UnsafeDirectory(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        problem = _problem(st)
    except BaseException:
        os.close(fd)
        raise
    if problem:
        os.close(fd)
        raise UnsafeDirectory(f"{path} {problem}; refusing to keep locks or runtime files there")
    return fd


def _problem(st: os.stat_result) -> str:
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if _WINDOWS:
        return ""  # per-user profile folders are private through ACLs, which st_mode does not show
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}): another account made it"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return f"is open to other users (mode {mode:04o}); run: chmod 700 on it"
    return ""


class HeldFile:
    """An exclusive lock held until :meth:`release` (closing the descriptor drops it)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def write_note(self, note: Mapping[str, Any]) -> None:
        """Replace the holder note (read by refused contenders)."""
        data = json.dumps(dict(note), separators=(",", ":")).encode()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, data)

    def in_place(self) -> bool:
        """Whether :attr:`path` still names the locked file (not renamed or removed since it was opened)."""
        try:
            return os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self._fd).st_ino
        except OSError:
            return False

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> HeldFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def take(
    directory: Path, name: str, *, wait_s: float = 0.0, note: Mapping[str, Any] | None = None
) -> HeldFile:
    """Lock ``directory/name`` exclusively, waiting up to ``wait_s`` (``inf``: until free).

    ``directory`` must already be private (see :func:`private_dir`); ``name`` is one
    path component. Raises :class:`LockHeld` with the holder's note when the wait runs
    out, :class:`UnsafeDirectory` when the directory is not ours alone.
    """
    if os.sep in name or (os.altsep and os.altsep in name) or name in ("", ".", ".."):
        raise ValueError(f"lock name must be one path component, not {name!r}")
    dir_fd = _open_dir(directory)
    try:
        fd = _open_relative(name, dir_fd, directory)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    path = directory / name
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (not _WINDOWS and st.st_uid != os.geteuid()):
            raise UnsafeDirectory(f"{path} is not a regular file of yours; remove it")
        deadline = time.monotonic() + wait_s
        while not try_lock(fd, block=wait_s == float("inf")):
            if time.monotonic() >= deadline:
                raise LockHeld(path, _read_note(fd))
            time.sleep(_POLL_S)
    except BaseException:
        os.close(fd)
        raise
    held = HeldFile(path, fd)
    if note is not None:
        held.write_note(note)
    return held


def _open_relative(name: str, dir_fd: int | None, directory: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        if dir_fd is not None and os.open in os.supports_dir_fd:
            return os.open(name, flags, 0o600, dir_fd=dir_fd)
        if (directory / name).is_symlink():  # no O_NOFOLLOW here: refuse a link before opening
            raise OSError(errno.ELOOP, "is a symlink")
        return os.open(directory / name, flags | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as exc:
        raise UnsafeDirectory(f"cannot open lock {directory / name}: {exc.strerror or exc}") from None


def try_lock(fd: int, *, block: bool) -> bool:
    """Lock the open file ``fd`` exclusively (until it is closed); False when another process holds it.

    The one lock primitive of the package, for callers that lock a file they
    opened themselves (an outbox entry, a read-modify-write). ``block`` waits
    for the holder on POSIX; Windows has no blocking form here (callers poll).
    The file position is left where it was.
    """
    if _WINDOWS:
        import msvcrt

        position = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows only
        except OSError:
            return False
        finally:
            os.lseek(fd, position, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_note(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        note = json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}
