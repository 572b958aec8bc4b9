"""One small hierarchy; translated to HTTP codes, MCP errors or exit codes only at the edges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class CascadeError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(CascadeError):
    """A configuration value is bad; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldError:
    """One schema violation: the JSON path of the field and what is wrong with it."""

    path: str
    message: str


class InvalidResponse(CascadeError):
    """A response body that cannot be accepted.

    ``kind`` is ``malformed`` (not JSON, not UTF-8, not an object: HTTP 400) or
    ``schema`` (valid JSON that breaks the schema: HTTP 422).
    """

    def __init__(self, kind: str, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in errors))
        self.kind = kind
        self.errors = tuple(errors)


class SignatureError(CascadeError):
    """A webhook signature that is missing, malformed, forged or stale (HTTP 401)."""


class StoreUnavailable(CascadeError):
    """Durable state cannot be written right now (HTTP 503; the sender falls back)."""


class Poisoned(CascadeError):
    """One item fails for a reason of its own (its content), so retrying cannot help: it is quarantined.

    ``kind`` is the quarantine reason counted in ``quarantined_total``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class SessionNotFound(CascadeError):
    """No session.json for the session, or its process is gone."""


def unwrap(exc: BaseException) -> BaseException:
    """The failure a task group wrapped: the first exception inside nested exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
