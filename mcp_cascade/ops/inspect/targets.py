"""``inspect targets``: a Prometheus ``file_sd`` list of every live sidecar and the bridge.

Sidecars listen on ephemeral ports, so a static scrape config cannot name
them; Prometheus re-reads this file whenever it changes (write it from cron,
a systemd timer, or ``watch -n 10``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp_cascade.durable import pid_alive, read_json
from mcp_cascade.receive.outbound import BRIDGE_JSON
from mcp_cascade.sessions import list_sessions


def file_sd(home: Path) -> list[dict[str, Any]]:
    """One target group per live process, labelled ``component`` (serve or bridge) and ``session``."""
    groups: list[dict[str, Any]] = []
    for name, info in list_sessions(home):
        if info is not None and info.alive:
            groups.append(
                _group(info.health_url, {"component": "serve", "session": name, "label": info.label})
            )
    bridge = read_json(home / BRIDGE_JSON)
    if isinstance(bridge, dict) and isinstance(bridge.get("pid"), int) and pid_alive(bridge["pid"]):
        groups.append(_group(str(bridge.get("health_url", "")), {"component": "bridge"}))
    return [g for g in groups if g["targets"]]


def _group(health_url: str, labels: dict[str, str]) -> dict[str, Any]:
    netloc = urlsplit(health_url).netloc
    return {"targets": [netloc] if netloc else [], "labels": labels}
