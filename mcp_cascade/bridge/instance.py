"""One bridge per bot token: the token, its fingerprint, the locks, and ``bridge/bridge.json``.

The token comes from ``TELEGRAM_BOT_TOKEN`` or ``$HOME/bridge/token`` (which must
be 0600). It is never printed or logged: only its fingerprint (a SHA-256 prefix)
appears anywhere. Two locks keep a second bridge from starting: an flock on
``$HOME/bridge/lock`` (one bridge per home) and one on a per-user lock file named
by the fingerprint (one bridge per token, whatever its home; Telegram would
otherwise answer both pollers 409 Conflict).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mcp_cascade import locks
from mcp_cascade.durable import BINARY, NOFOLLOW, atomic_write_json, read_json
from mcp_cascade.errors import CascadeError
from mcp_cascade.receive.outbound import BRIDGE_JSON
from mcp_cascade.redact import keep_secret
from mcp_cascade.sessions import PROTOCOL

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
TOKEN_FILE = Path("bridge") / "token"
LOCK_FILE = Path("bridge") / "lock"


class TokenError(CascadeError):
    """No usable bot token (the message never contains the token)."""


class AlreadyRunning(CascadeError):
    """Another bridge holds the lock for this home or this token."""


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to print."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def load_token(home: Path, env: Mapping[str, str]) -> str:
    """``TELEGRAM_BOT_TOKEN``, else the 0600 token file in the home."""
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        keep_secret(token)
        return token
    path = home / TOKEN_FILE
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | BINARY)
    except FileNotFoundError:
        raise TokenError(
            f"no bot token: set {TOKEN_ENV} or write it to {path} (mode 0600); get one from @BotFather"
        ) from None
    except OSError as exc:
        raise TokenError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        if mode & 0o077:
            raise TokenError(f"{path} is readable by others (mode {mode:04o}); run: chmod 600 {path}")
        token = fh.read().decode("utf-8", "replace").strip()
    if not token:
        raise TokenError(f"{path} is empty")
    keep_secret(token)
    return token


@dataclass
class BridgeLock:
    """Both locks, held until :meth:`release`."""

    files: list[locks.HeldFile]

    def release(self) -> None:
        """Release both locks."""
        for held in self.files:
            held.release()
        self.files.clear()


def acquire(home: Path, token: str, env: Mapping[str, str]) -> BridgeLock:
    """Take the home lock and the token lock, or raise AlreadyRunning naming the holder.

    The token lock lives in the user's verified private runtime directory
    (:func:`mcp_cascade.locks.runtime_dir`); UnsafeDirectory if that is not ours alone.
    """
    fp = fingerprint(token)
    holder = {"pid": os.getpid(), "home": str(home), "token": fp}
    files: list[locks.HeldFile] = []
    try:
        for directory, name, what in (
            (locks.private_dir(home / LOCK_FILE.parent), LOCK_FILE.name, f"home {home}"),
            (locks.runtime_dir(env), f"bridge-{fp}.lock", f"bot token {fp}"),
        ):
            try:
                files.append(locks.take(directory, name, note=holder))
            except locks.LockHeld as held:
                other = held.holder
                raise AlreadyRunning(
                    f"a bridge is already running for {what} (pid {other.get('pid', '?')}, "
                    f"home {other.get('home', '?')}, token fingerprint {other.get('token', '?')}); "
                    "stop it first: one bridge per bot token"
                ) from None
    except BaseException:
        BridgeLock(files).release()
        raise
    return BridgeLock(files)


def publish(home: Path, api_url: str) -> None:
    """Write ``bridge/bridge.json`` (DESIGN 4) atomically."""
    atomic_write_json(
        home / BRIDGE_JSON,
        {"protocol": PROTOCOL, "pid": os.getpid(), "api_url": api_url, "health_url": api_url + "/health"},
    )


def unpublish(home: Path) -> None:
    """Remove ``bridge/bridge.json`` if it is ours."""
    data = read_json(home / BRIDGE_JSON)
    if isinstance(data, dict) and data.get("pid") == os.getpid():
        (home / BRIDGE_JSON).unlink(missing_ok=True)
