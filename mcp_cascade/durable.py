"""Durable file writes: the one place that knows the tmp → fsync → rename → fsync(dir) dance.

"Durable" means: on the disk itself, surviving a power cut, before anything is
acknowledged. What that takes differs by platform, and only this module knows:

- Linux: ``fsync`` of the file, then of its directory (the rename lives there).
- macOS: ``fsync`` only hands the data to the drive, whose cache may still lose
  it; ``fcntl(F_FULLFSYNC)`` asks the drive to flush, for the file and for the
  directory. A filesystem that refuses it (some network and FUSE mounts) gets
  ``fsync``, the best it offers, as SQLite does.
- Windows: ``os.fsync`` is ``FlushFileBuffers``. A directory cannot be opened
  with ``os.open`` there, so no directory is flushed: NTFS records the rename in
  its metadata journal (``os.replace`` is ``MoveFileExW``), which reaches the
  disk on the journal's next commit, not before this call returns.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

PLATFORM = sys.platform
# Flags some platforms lack (Windows has no O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK, O_CLOEXEC; only
# Windows has O_BINARY, without which its C runtime translates newlines): 0 where absent.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
BINARY = getattr(os, "O_BINARY", 0)
# What a filesystem without F_FULLFSYNC answers (network and FUSE mounts): fsync is the most it offers.
_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EINVAL, errno.ENOTTY})


def fsync_file(fd: int) -> None:
    """Make what was written to ``fd`` durable (F_FULLFSYNC on macOS, fsync elsewhere)."""
    if PLATFORM == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # type: ignore[attr-defined]  # macOS only
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise  # a failing disk: the write is not durable, and the caller must not acknowledge it
    os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable, so a rename into it survives power loss.

    Nothing to do on Windows (see the module's docstring).
    """
    if PLATFORM == "win32":
        return
    fd = os.open(path, os.O_RDONLY | DIRECTORY)
    try:
        fsync_file(fd)
    finally:
        os.close(fd)


def durable_rename(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (replacing it) and make the new directory entry durable."""
    os.replace(source, target)
    fsync_dir(target.parent)


def write_excl(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (O_EXCL, never following a link), write ``data`` and make it durable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | BINARY, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fsync_file(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    write_excl(tmp, data, mode)
    try:
        durable_rename(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any, mode: int = 0o600) -> None:
    """:func:`atomic_write` of pretty JSON."""
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    """Parse a JSON file; None when it is missing or torn."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0; on Windows, a handle that has not exited)."""
    if pid <= 0:
        return False
    if PLATFORM == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    # os.kill(pid, 0) on Windows would send CTRL_C_EVENT (0) to a process group: ask the kernel instead.
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]  # Windows only
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        denied: bool = ctypes.get_last_error() == 5  # type: ignore[attr-defined]  # Windows only
        return denied  # ERROR_ACCESS_DENIED: it exists, owned by someone else
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
    finally:
        kernel32.CloseHandle(handle)


def pid_owner(pid: int) -> int | None:
    """The uid a live process runs as, where the system shows it (``/proc``); None where it does not."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        if not hasattr(os, "geteuid"):
            return None
        try:
            os.kill(pid, 0)
        except PermissionError:
            return -1  # alive and not ours: signalling it is refused
        except OSError:
            return None
        return os.geteuid()


def dir_writable(path: Path) -> bool:
    """Whether a file can be created in ``path`` now (it exists, is writable, on a filesystem with room)."""
    try:
        if hasattr(os, "statvfs"):
            st = os.statvfs(path)
            if st.f_flag & os.ST_RDONLY or st.f_bavail == 0:
                return False
        elif shutil.disk_usage(path).free == 0:  # Windows: no statvfs
            return False
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)
