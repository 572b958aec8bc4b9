"""The home directory: made private before anything is put in it (see docs/security.md)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mcp_cascade.errors import ConfigError
from mcp_cascade.events import Event, Observer

_PRIVATE_DIRS = ("", "bridge", "sessions")


def ensure_home(home: Path) -> list[str]:
    """Create the home 0700 (and check it can be written); tighten one that others can reach.

    An existing home, ``bridge/`` or ``sessions/`` open to the group or to others
    (older docs said ``mkdir -p``) is tightened: every directory under it to 0700,
    every file to 0600. Returns what was tightened, for the caller's warning.
    A home owned by another account is refused (we could not tighten it).
    """
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = home.stat()
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise ConfigError(
                "home", f"{home} belongs to uid {st.st_uid}, not to you; use a home of your own"
            )
        loose = hasattr(os, "geteuid") and any(_loose(home / d) for d in _PRIVATE_DIRS)
        tightened = _tighten(home) if loose else []
        probe = home / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError("home", f"{home} is not writable: {exc.strerror or exc}") from exc
    return tightened


def warn_tightened(observer: Observer, home: Path, tightened: list[str]) -> None:
    """Say, once at start, that a home others could reach was made private."""
    if tightened:
        observer.emit(
            Event(
                "home_tightened",
                level="warning",
                reason=f"{home} was open to other users; made its directories 0700 and files 0600",
                fields={"paths": len(tightened), "first": tightened[0]},
            )
        )


def _loose(path: Path) -> bool:
    try:
        return bool(path.lstat().st_mode & 0o077)
    except FileNotFoundError:
        return False


def _tighten(home: Path) -> list[str]:
    done: list[str] = []
    uid = os.geteuid()
    for root, dirs, files in os.walk(home):  # never follows a symlinked directory
        for path, private in [(Path(root), 0o700), *((Path(root) / f, 0o600) for f in files)]:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or st.st_uid != uid or not st.st_mode & 0o077:
                continue
            path.chmod(stat.S_IMODE(st.st_mode) & private)
            done.append(str(path))
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
    return done
