"""The one way to put something between a sender and a session: rewrite its discovery file.

A sender finds a session's webhook in ``session.json``; pointing ``webhook_url``
elsewhere (a fault proxy, a closed port, a stub) puts that on the network path,
as a flaky link or a stuck middlebox would be. The rewrite is atomic, so a
sender never reads half a file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from mcp_cascade.durable import atomic_write_json, read_json
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.testing.faults import FaultProxy


def sidecar_address(home: Path, session: str) -> tuple[str, int]:
    """The host and port the session's discovery file names now."""
    data = read_json(SessionPaths(home, session).session_json)
    if not isinstance(data, dict) or not isinstance(data.get("webhook_url"), str):
        raise RuntimeError(f"session {session!r} has no session.json with a webhook_url under {home}")
    url = urlsplit(data["webhook_url"])
    if url.hostname is None or url.port is None:
        raise RuntimeError(f"session {session!r} publishes {data['webhook_url']!r}: no host and port")
    return url.hostname, url.port


def point_webhook_at(home: Path, session: str, url: str) -> None:
    """Rewrite the session's discovery file so its ``webhook_url`` is ``url`` (everything else stays)."""
    path = SessionPaths(home, session).session_json
    data = read_json(path)
    if not isinstance(data, dict):
        raise RuntimeError(f"{path} is not a discovery file")
    data["webhook_url"] = url
    atomic_write_json(path, data)


def route_through(home: Path, session: str, proxy: FaultProxy) -> str:
    """Aim ``proxy`` at the session's sidecar and the session at the proxy; returns the direct URL."""
    data = read_json(SessionPaths(home, session).session_json)
    assert isinstance(data, dict)
    direct = str(data["webhook_url"])
    proxy.target = sidecar_address(home, session)
    point_webhook_at(home, session, proxy.url(urlsplit(direct).path))
    return direct
