"""The one place secrets are taken out of text before it leaves the process.

The bot token (and its secret half alone, which a URL-encoded ``:`` leaves
standing) and the home's webhook secret (and its base64 part) are registered by
the code that loads them (:func:`keep_secret`). Every output applies
:func:`scrub`: JSON log lines, audit records, health and API error bodies, the
one line a command prints when it fails, and library log records. Matching
ignores case: a library may change the case of a message (python-telegram-bot
capitalizes "Bad Request: ..." descriptions, lowering the rest).
"""

from __future__ import annotations

import re
import threading
from typing import Any

PLACEHOLDER = "<secret>"
_MIN_LEN = 8  # shorter parts would match ordinary words
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def keep_secret(value: str) -> None:
    """Register a secret: from now on :func:`scrub` removes it, whatever its case."""
    global _pattern
    parts = {value, value.partition(":")[2], value.removeprefix("whsec_")}
    with _lock:
        _secrets.update(p for p in parts if len(p) >= _MIN_LEN)
        ordered = sorted(_secrets, key=len, reverse=True)  # the whole token before its half
        _pattern = re.compile("|".join(re.escape(s) for s in ordered), re.IGNORECASE) if ordered else None


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``<secret>``."""
    pattern = _pattern
    return pattern.sub(PLACEHOLDER, text) if pattern is not None else text


def scrub_json(value: Any) -> Any:
    """A JSON-shaped value with :func:`scrub` applied to every string in it, keys included."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_json(k): scrub_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(v) for v in value]
    return value
