"""Where things are under the home, and the discovery files of DESIGN 4."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_cascade.durable import atomic_write_json, pid_alive, pid_owner, read_json
from mcp_cascade.errors import ConfigError
from mcp_cascade.wire import WEBHOOK_PATH

PROTOCOL = 1


@dataclass(frozen=True, slots=True)
class SessionPaths:
    """The files of one session under the home."""

    home: Path
    session: str

    @property
    def dir(self) -> Path:
        """``sessions/<id>/``."""
        return self.home / "sessions" / self.session

    @property
    def session_json(self) -> Path:
        """The discovery file the sidecar publishes."""
        return self.dir / "session.json"

    @property
    def state_db(self) -> Path:
        """The session's durable store."""
        return self.dir / "state.db"

    @property
    def inbox(self) -> Path:
        """The tier-3 maildir root."""
        return self.dir / "inbox"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A parsed session.json."""

    session_id: str
    pid: int
    webhook_url: str
    health_url: str
    started_at: str
    cwd: str
    label: str
    host: str = ""  # set for a session registered by another host (reached through NATS)
    node: str = ""

    @property
    def remote(self) -> bool:
        """Whether the session runs on another host (its pid means nothing here)."""
        return bool(self.node)

    @property
    def alive(self) -> bool:
        """Whether the serving process still exists, as a process of ours.

        A pid reused by another account's process is not our serve: answers never go
        to whatever that account listens on. A session of another host (registered
        through NATS) was heard from recently; its pid means nothing here.
        """
        if self.remote:
            return True
        if not pid_alive(self.pid):
            return False
        owner = pid_owner(self.pid)
        return owner is None or not hasattr(os, "geteuid") or owner == os.geteuid()


def publish_session(paths: SessionPaths, *, base_url: str, started_at: str, cwd: Path, label: str) -> None:
    """Write the discovery file of a running serve whose sidecar answers at ``base_url`` (its holder only)."""
    atomic_write_json(
        paths.session_json,
        {
            "protocol": PROTOCOL,
            "session_id": paths.session,
            "pid": os.getpid(),
            "webhook_url": base_url + WEBHOOK_PATH,
            "health_url": base_url + "/health",
            "started_at": started_at,
            "cwd": str(cwd),
            "label": label,
        },
    )


def read_session(home: Path, session: str) -> SessionInfo | None:
    """The session's discovery file, or None when it is missing, torn or from another protocol."""
    return _parse(read_json(SessionPaths(home, session).session_json))


def _parse(data: Any) -> SessionInfo | None:
    if not isinstance(data, dict) or data.get("protocol") != PROTOCOL:
        return None
    try:
        return SessionInfo(
            str(data["session_id"]),
            int(data["pid"]),
            str(data["webhook_url"]),
            str(data["health_url"]),
            str(data.get("started_at", "")),
            str(data.get("cwd", "")),
            str(data.get("label", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def list_sessions(home: Path) -> list[tuple[str, SessionInfo | None]]:
    """Every session directory under the home with its discovery file (None when not running)."""
    root = home / "sessions"
    if not root.is_dir():
        return []
    return [(d.name, read_session(home, d.name)) for d in sorted(root.iterdir()) if d.is_dir()]


def session_id_for(cwd: Path) -> str:
    """A session id that stays the same for the same project directory (a second window adds ``-2``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", cwd.name.lower()).strip("-")[:40] or "session"
    digest = hashlib.sha256(str(cwd.resolve()).encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def resolve_session(flag: str | None, env: Mapping[str, str], cwd: Path) -> str:
    """The session id: flag > ``MCP_CASCADE_SESSION`` > derived from the project directory."""
    from mcp_cascade.config import ENV_PREFIX, SESSION_ID_RE  # pydantic: only for the command that needs it

    value = flag or env.get(ENV_PREFIX + "SESSION") or session_id_for(cwd)
    if not SESSION_ID_RE.match(value):
        raise ConfigError("session", f"{value!r} is not a valid session id ([a-z0-9-]{{1,64}})")
    return value
