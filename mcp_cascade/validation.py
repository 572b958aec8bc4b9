"""What a response body must be before it becomes a :class:`~mcp_cascade.response.Response`.

The wire's limits and the JSON Schema (``response.schema.json``, beside this
module), the checks the schema cannot state (lone surrogates, numbers that are
not integers, keys the server owns, timestamps outside [2000, now + 1 day]),
and the strict JSON decoding of a body. Each validator is built once, since
building it per call costs ten times the validation itself: jsonschema-rs
(about 1 µs for a 1 KB body) answers "valid or not" on every request; the
reference ``jsonschema`` validator is built (and imported) only when a body
fails, and it alone decides what is wrong and how to say it, so the answer to a
bad body names the same fields as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from mcp_cascade.errors import FieldError, InvalidResponse

MAX_BODY_BYTES = 64 * 1024
MAX_CALLBACK_BYTES = 64

SCHEMA: Mapping[str, Any] = json.loads(
    Path(__file__).with_name("response.schema.json").read_text(encoding="utf-8")
)
_FAST = jsonschema_rs.validator_for(dict(SCHEMA))
# Channel attributes the server sets (DESIGN 3); a body may not carry them in its meta.
SERVER_META = frozenset(
    {"source", "redelivered", "response_id", "correlation_id", "tier", "type", "user", "chat_id"}
    | {"request_id", "callback_data", "message_id", "session"}
)
# Answers older than this or further ahead of the server's clock are refused: they are no real answer,
# and one past year 9999 after its offset overflows every datetime computation.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
CORRELATION_RE = re.compile(SCHEMA["properties"]["correlation_id"]["pattern"])
ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # the id's syntax (DESIGN 5), for headers that carry one


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


@cache
def _reference() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(SCHEMA)


def _fast_valid(data: Any) -> bool:
    try:
        return bool(_FAST.is_valid(data))
    except (ValueError, TypeError, OverflowError):  # what Rust cannot hold (lone surrogates, huge ints)
        return False


def validate(data: Any, *, now: datetime | None = None) -> list[FieldError]:
    """Every schema violation in ``data``, each with its JSON path; empty when valid.

    Beyond the schema: what the store, the wire and the client cannot carry (lone
    surrogates, numbers that are not integers, NaN/Infinity), keys the server owns,
    and timestamps outside [2000, now + 1 day].
    """
    errors = list(_uncarriable(data, "$"))
    if errors:
        return errors  # the schema's own messages would quote the same values again
    errors = (
        []
        if _fast_valid(data)
        else [
            FieldError(_path(err.absolute_path), _describe(err.message, err.validator))
            for err in _reference().iter_errors(data)
        ]
    )
    if isinstance(data, dict) and not errors:
        cb = data.get("callback_data")
        if isinstance(cb, str) and len(cb.encode()) > MAX_CALLBACK_BYTES:
            errors.append(FieldError("$.callback_data", "is longer than 64 bytes"))
        errors.extend(
            FieldError(f"$.meta.{k}", "is set by the server")
            for k in data.get("meta", {})
            if k in SERVER_META
        )
        if problem := _timestamp_problem(data["timestamp"], now or datetime.now(UTC)):
            errors.append(FieldError("$.timestamp", problem))
    return errors


def _uncarriable(value: Any, path: str) -> list[FieldError]:
    """What no JSON encoder, UTF-8 store or JavaScript client takes: lone surrogates, floats, NaN/Infinity."""
    if isinstance(value, str):
        if value.isascii():
            return []
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return [
                FieldError(
                    path,
                    f"contains a lone UTF-16 surrogate (U+{ord(value[exc.start]):04X}): not Unicode text",
                )
            ]
        return []
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return [FieldError(path, "NaN and Infinity are not JSON numbers")]
        return [FieldError(path, "must be an integer (no fraction, no exponent)")]
    if isinstance(value, dict):
        found: list[FieldError] = []
        for key, item in value.items():
            if key_errors := _uncarriable(key, path):
                found.extend(key_errors)
                continue
            found.extend(_uncarriable(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        return [e for n, item in enumerate(value) for e in _uncarriable(item, f"{path}[{n}]")]
    return []


def _timestamp_problem(value: str, now: datetime) -> str | None:
    try:
        when = datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        return "is not a valid RFC 3339 date-time"
    if when < EARLIEST:
        return "is before 2000-01-01"
    if when > now + FUTURE_SLACK:
        return "is more than a day ahead of this server's clock"
    return None


def _describe(message: str, validator: object) -> str:
    # jsonschema quotes the whole offending value; a 60 KB string would end up in the answer.
    return message if len(message) <= 300 else message[:297] + "..."


def parse_body(body: bytes) -> Any:
    """Decode a JSON body strictly; InvalidResponse('malformed') on anything that is not JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidResponse("malformed", [FieldError("$", f"body is not UTF-8 ({exc.reason})")]) from exc
    try:
        return json.loads(text, parse_float=_number)
    except RecursionError as exc:
        raise InvalidResponse("malformed", [FieldError("$", "JSON nested too deeply")]) from exc
    except ValueError as exc:  # JSONDecodeError, and int() past the digit limit
        raise InvalidResponse("malformed", [FieldError("$", f"not valid JSON: {exc}")]) from exc


def _number(literal: str) -> int | float:
    """A JSON number with a fraction or exponent: an int when it is a whole one (``42.0``, ``1e3``).

    Anything else stays a float, which validation refuses: no field of the contract holds one.
    """
    value = Decimal(literal)
    if value.adjusted() <= 30 and value == value.to_integral_value():
        return int(value)
    return float(value)
