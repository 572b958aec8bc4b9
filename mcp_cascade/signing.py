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
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mcp_cascade.durable import fsync_dir, write_excl
from mcp_cascade.errors import SignatureError
from mcp_cascade.redact import keep_secret

SECRET_FILE = "secret"
_TOLERANCE_S = 300
_SECONDS_RE = re.compile(r"[0-9]{1,12}")


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
    write_excl(tmp, value.encode() + b"\n")
    try:
        os.link(tmp, path)  # fails if another process won the race; then theirs is the secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    fsync_dir(home)
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
        if not _SECONDS_RE.fullmatch(ts):  # str.isdigit() takes superscripts, which int() refuses
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


def sign_answer(signer: Signer, request_id: str, body: bytes) -> dict[str, str]:
    """Signature headers for an answer to the verified request ``request_id``.

    Answers are signed under ``<request id>.answer``: never the id of a request, so
    a request echoed back verbatim (body and signature) does not pass as an answer.
    """
    return signer.headers(request_id + ".answer", body)


def verify_answer(signer: Signer, request_id: str, headers: Mapping[str, str], body: bytes) -> None:
    """Check that an API answer was signed with the home's secret for the request ``request_id``.

    An answer recorded earlier cannot be played back for a new request (its id differs).
    """
    answered = signer.verify(headers, body)
    if answered != request_id + ".answer":
        raise SignatureError(f"answer is signed as {answered!r}, not as the answer to {request_id!r}")


TIER_SIGNATURE = "x-cascade-tier-signature"


def sign_tier(signer: Signer, headers: Mapping[str, str], tier: int) -> dict[str, str]:
    """The ``x-cascade-tier`` header and its signature, bound to a signed request's id and timestamp."""
    ts = int(headers["webhook-timestamp"])
    tag = signer.headers(headers["webhook-id"] + ".tier", str(tier).encode(), ts)["webhook-signature"]
    return {"x-cascade-tier": str(tier), TIER_SIGNATURE: tag}


def signed_tier(signer: Signer, headers: Mapping[str, str]) -> int:
    """The tier a verified request claims, when its signature covers the claim; 1 otherwise.

    An unsigned or forged ``x-cascade-tier`` is ignored (it only labels metrics and meta).
    """
    claimed = headers.get("x-cascade-tier", "1")
    tag = headers.get(TIER_SIGNATURE)
    if claimed == "1" or not tag or not claimed.isdigit():
        return 1
    try:
        signer.verify(
            {
                "webhook-id": headers.get("webhook-id", "") + ".tier",
                "webhook-timestamp": headers.get("webhook-timestamp", ""),
                "webhook-signature": tag,
            },
            claimed.encode(),
        )
    except SignatureError:
        return 1
    return int(claimed)


class Replays:
    """The ids of signed requests seen within the timestamp tolerance: a second use is a replay.

    An id older than the tolerance cannot pass :meth:`Signer.verify` again, so it is
    forgotten then; ``cap`` bounds the memory under a flood (the oldest go first).
    """

    def __init__(self, cap: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._cap = cap
        self._clock = clock

    def first_use(self, msg_id: str) -> None:
        """Remember ``msg_id``; SignatureError if it was used within the tolerance."""
        now = self._clock()
        while self._seen and (len(self._seen) >= self._cap or next(iter(self._seen.values())) < now):
            self._seen.popitem(last=False)
        if msg_id in self._seen:
            raise SignatureError(f"webhook-id {msg_id!r} was already used: a replayed request")
        self._seen[msg_id] = now + 2 * _TOLERANCE_S
