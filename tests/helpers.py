"""Test helpers: response bodies, and signing done by the tests' own HMAC code (not the package's)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def sign(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers computed here, independently of the package's signing code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json",
    }


def body(
    kind: str = "message", *, id: str | None = None, text: str = "yes, go ahead", **extra: Any
) -> dict[str, Any]:
    """A valid response body."""
    data: dict[str, Any] = {
        "id": id or f"tg:1:{uuid.uuid4().int % 10**9}",
        "type": kind,
        "user": {"id": 42, "username": "alice"},
        "timestamp": "2026-11-29T10:00:00Z",
        "chat_id": 4242,
    }
    if kind == "message":
        data["text"] = text
    elif kind == "callback":
        data["callback_data"] = "opt:1"
    else:
        data.update(request_id="abcde", behavior="allow")
    data.update(extra)
    return data


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


ROOT = Path(__file__).resolve().parent.parent  # the checkout, for children given a minimal environment


def run_inspect(home: Path, *args: str, columns: int = 220) -> subprocess.CompletedProcess[str]:
    """``mcp-cascade inspect ARGS --home HOME`` as a subprocess, on this checkout's code."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "mcp_cascade", "inspect", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
