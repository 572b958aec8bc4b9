"""serve → bridge: questions, replies and permission prompts over the bridge's signed local API.

The bridge publishes ``bridge/bridge.json`` (DESIGN 4); requests carry Standard
Webhooks signatures made with the home's shared secret, the same as tier 1.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from mcp_cascade._fs import read_json
from mcp_cascade.config import Config
from mcp_cascade.errors import CascadeError
from mcp_cascade.signing import Signer

ALLOWLIST = Path("bridge") / "allowlist.json"
BRIDGE_JSON = Path("bridge") / "bridge.json"


def allowed_users(home: Path, config: Config) -> frozenset[int]:
    """Telegram user ids that may answer: the config's ``allow`` plus those paired with the bridge."""
    paired = read_json(home / ALLOWLIST)
    users = set(config.allow)
    if isinstance(paired, dict):
        users.update(int(u) for u in paired.get("users", []) if isinstance(u, int))
    return frozenset(users)


class BridgeUnavailable(CascadeError):
    """No bridge is running for this home, or it did not answer."""


class BridgeClient:
    """Calls the bridge's outbound API; implements channel.Outbound."""

    def __init__(self, home: Path, signer: Signer, timeout_s: float = 5.0) -> None:
        self._home = home
        self._signer = signer
        self._timeout = timeout_s

    async def _post(self, path: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        info = read_json(self._home / BRIDGE_JSON)
        if not isinstance(info, dict) or not isinstance(info.get("api_url"), str):
            raise BridgeUnavailable(f"no bridge is running for {self._home} (start: mcp-cascade bridge)")
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = self._signer.headers(f"out:{uuid.uuid4().hex}", body)
        headers["content-type"] = "application/json"
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                answer = await client.post(info["api_url"].rstrip("/") + path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BridgeUnavailable(f"bridge at {info['api_url']} did not answer: {exc!r}") from exc
        try:
            data = answer.json()
        except ValueError:
            data = {"error": answer.text[:200]}
        if answer.status_code >= 300:
            raise BridgeUnavailable(f"bridge refused {path}: {answer.status_code} {data.get('error', data)}")
        return data if isinstance(data, dict) else {"result": data}

    async def ask(self, session: str, question: str, options: list[str]) -> Mapping[str, Any]:
        """Ask the user; the bridge returns the request id the answer will carry."""
        return await self._post("/api/ask", {"session": session, "question": question, "options": options})

    async def reply(self, session: str, chat_id: int, text: str) -> Mapping[str, Any]:
        """Send a plain message."""
        return await self._post("/api/reply", {"session": session, "chat_id": chat_id, "text": text})

    async def permission_request(self, session: str, request: Mapping[str, str]) -> None:
        """Relay a permission prompt (Allow / Deny buttons)."""
        await self._post("/api/permission", {"session": session, **request})
