"""Durable file writes: the one place that knows the tmp → fsync → rename → fsync(dir) dance."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename into it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_excl(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (O_EXCL, never following a link), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    write_excl(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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
    """Whether a process with this pid exists (signal 0)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        st = os.statvfs(path)
    except OSError:
        return False
    if st.f_flag & os.ST_RDONLY or st.f_bavail == 0:
        return False
    return os.access(path, os.W_OK | os.X_OK)
