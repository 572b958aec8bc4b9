"""Standard Webhooks signatures, and the shared secret they use.

The verification itself is the ``standardwebhooks`` library; this module only
closes its gaps (a malformed header raises ValueError there, a non-UTF-8 body
UnicodeDecodeError, and a fractional timestamp passes), so that every bad
request becomes a SignatureError (401) and never a 500.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mcp_cascade.errors import SignatureError
from mcp_cascade.redact import keep_secret

SECRET_FILE = "secret"
_TOLERANCE_S = 300


def load_or_create_secret(home: Path) -> str:
    """The home's ``whsec_`` secret, created 0600 atomically by whoever needs it first.

    It is registered with :func:`mcp_cascade.redact.keep_secret`, so no output shows it.
    """
    secret = _load_or_create(home)
    keep_secret(secret)
    return secret


def _load_or_create(home: Path) -> str:
    path = home / SECRET_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    tmp = home / f".secret.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process won the race; then theirs is the secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    dir_fd = os.open(home, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path.read_text(encoding="ascii").strip()


class Signer:
    """Signs and verifies bodies with one secret."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers for ``body``."""
        ts = int(time.time()) if timestamp is None else timestamp
        signature = self._webhook.sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}

    def verify(self, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = _TOLERANCE_S) -> str:
        """Check the signature headers against ``body``; return the webhook id.

        ``tolerance_s`` is how old (or how far ahead) the timestamp may be: five
        minutes for a webhook, the retention period for a message that may
        wait in a JetStream stream while its session is down.
        Raises SignatureError with a reason a sender can act on.
        """
        msg_id = headers.get("webhook-id")
        ts = headers.get("webhook-timestamp")
        sig = headers.get("webhook-signature")
        if not msg_id or not ts or not sig:
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        if not ts.isdigit() or len(ts) > 12:
            raise SignatureError("webhook-timestamp must be whole unix seconds")
        if abs(time.time() - int(ts)) > tolerance_s:
            raise SignatureError(f"webhook-timestamp is outside the {tolerance_s:g} s tolerance")
        for part in sig.split(" "):
            version, _, value = part.partition(",")
            if not version or not value:
                raise SignatureError("webhook-signature must be space-separated 'v1,<base64>' items")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("body is not UTF-8, so it cannot be signed") from exc
        try:
            self._webhook.verify(
                body,
                {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig},
                json_parse=False,
            )
        except WebhookVerificationError as exc:
            raise SignatureError(f"signature does not verify: {exc}") from exc
        except (ValueError, binascii.Error) as exc:
            raise SignatureError(f"malformed webhook-signature: {exc}") from exc
        return msg_id
