"""serve → bridge: questions, replies and permission prompts over the bridge's signed local API.

The bridge publishes ``bridge/bridge.json`` (DESIGN 4); requests carry Standard
Webhooks signatures made with the home's shared secret, the same as tier 1, and
so do the bridge's answers (see :class:`BridgeClient`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mcp_cascade.config import Config
from mcp_cascade.durable import pid_alive, pid_owner, read_json
from mcp_cascade.errors import CascadeError, SignatureError
from mcp_cascade.signing import Signer, verify_answer

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
    """No bridge is running for this home, it did not answer, or it could not prove who it is."""


class _Unverified(BridgeUnavailable):
    """Something answered at the bridge's address without the home's signature."""


@dataclass(frozen=True, slots=True)
class BridgeCheck:
    """What serve last learned about the bridge (``cascade_status`` and health show it)."""

    verified: bool
    reason: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"verified": self.verified, "reason": self.reason, "checked_at": round(self.at, 3)}


class BridgeClient:
    """Calls the bridge's outbound API; implements channel.Outbound.

    Nothing is sent to a bridge that has not proved itself first: ``bridge.json``
    must be ours with a live pid of our own user, and the bridge must answer a
    fresh signed challenge (``/api/hello``) with an answer signed by the home's
    secret; every answer after it is checked the same way. A port freed by a dead
    bridge and taken by another account gets a nonce, never a question.
    """

    def __init__(self, home: Path, signer: Signer, timeout_s: float = 10.0) -> None:
        self._home = home
        self._signer = signer
        self._timeout = timeout_s
        self.last: BridgeCheck | None = None

    def check(self) -> dict[str, Any]:
        """The cheap checks (bridge.json, its pid) now, and the last challenge's result."""
        try:
            url = self._published()
        except BridgeUnavailable as exc:
            return {"verified": False, "reason": str(exc)}
        if self.last is None:
            return {"verified": None, "reason": f"bridge at {url} not challenged yet (first question does)"}
        return self.last.to_dict()

    def _published(self) -> str:
        path = self._home / BRIDGE_JSON
        try:
            info = read_json(path)
        except OSError as exc:  # a folder in its place, no descriptor left (EMFILE): no bridge to use now
            raise BridgeUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not isinstance(info, dict) or not isinstance(info.get("api_url"), str):
            raise BridgeUnavailable(f"no bridge is running for {self._home} (start: mcp-cascade bridge)")
        try:
            owner_of_file = path.lstat().st_uid if hasattr(os, "geteuid") else None
        except OSError as exc:  # removed since it was read: the bridge is stopping
            raise BridgeUnavailable(f"no bridge is running for {self._home} ({exc.strerror})") from exc
        if owner_of_file is not None and owner_of_file != os.geteuid():
            raise BridgeUnavailable(f"{path} belongs to another user; not sending anything to it")
        pid = info.get("pid")
        if not isinstance(pid, int) or not pid_alive(pid):
            raise BridgeUnavailable(
                f"the bridge (pid {pid}) in {path} is not running; start mcp-cascade bridge"
            )
        owner = pid_owner(pid)
        if owner is not None and owner != os.geteuid():
            raise BridgeUnavailable(
                f"pid {pid} in {path} belongs to uid {owner}, not to you; not a bridge of yours"
            )
        return str(info["api_url"]).rstrip("/")

    async def _exchange(
        self, client: httpx.AsyncClient, url: str, payload: Mapping[str, Any]
    ) -> tuple[int, Any]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        msg_id = f"out:{uuid.uuid4().hex}"
        headers = {**self._signer.headers(msg_id, body), "content-type": "application/json"}
        try:
            answer = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BridgeUnavailable(f"bridge at {url} did not answer: {exc!r}") from exc
        try:
            verify_answer(self._signer, msg_id, answer.headers, answer.content)
        except SignatureError as exc:
            raise _Unverified(f"the answer from {url} is not signed with this home's secret ({exc})") from exc
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, {"error": answer.text[:200]}

    async def _post(self, path: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        now = time.time()
        try:
            base = self._published()
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                nonce = secrets.token_hex(16)
                status, hello = await self._exchange(client, base + "/api/hello", {"nonce": nonce})
                if status != 200 or not isinstance(hello, dict) or hello.get("nonce") != nonce:
                    raise _Unverified(f"bridge at {base} did not echo the challenge ({status})")
                self.last = BridgeCheck(True, f"bridge at {base} answered a signed challenge", now)
                status, data = await self._exchange(client, base + path, payload)
        except BridgeUnavailable as exc:
            self.last = BridgeCheck(False, str(exc), now)
            raise
        if status >= 300:
            error = data.get("error", data) if isinstance(data, dict) else data
            raise BridgeUnavailable(f"bridge refused {path}: {status} {error}")
        return data if isinstance(data, dict) else {"result": data}

    async def ask(self, session: str, question: str, options: list[str]) -> Mapping[str, Any]:
        """Ask the user; the bridge returns the request id the answer will carry."""
        return await self._post("/api/ask", {"session": session, "question": question, "options": options})

    async def reply(
        self, session: str, chat_id: int, text: str, files: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        """Send a plain message."""
        body: dict[str, Any] = {"session": session, "chat_id": chat_id, "text": text}
        if files:
            body["files"] = list(files)
        return await self._post("/api/reply", body)

    async def permission_request(self, session: str, request: Mapping[str, str]) -> None:
        """Relay a permission prompt (Allow / Deny buttons)."""
        await self._post("/api/permission", {"session": session, **request})
