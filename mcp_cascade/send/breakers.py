"""Each session's breaker, as the sender keeps them: one per session, reset when a new server appears.

The breaker itself is pure logic (:mod:`mcp_cascade.send.breaker`); this is where a
sender finds the one for a session, applies a reloaded configuration to it,
and reports its transitions, naming the response whose attempt moved it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from functools import partial

from mcp_cascade.clock import Clock
from mcp_cascade.config import Config
from mcp_cascade.events import Event, Observer
from mcp_cascade.response import Response
from mcp_cascade.send.breaker import Breaker, BreakerSettings, BreakerSnapshot
from mcp_cascade.sessions import SessionInfo

__all__ = ["SessionBreakers", "breaker_settings"]

# The response whose attempt moved a breaker, for the breaker event (each task has its own value).
_CAUSE: ContextVar[Response | None] = ContextVar("mcp_cascade_breaker_cause", default=None)


def breaker_settings(config: Config) -> BreakerSettings:
    """The breaker settings of a configuration."""
    return BreakerSettings(
        threshold=config.breaker_threshold,
        slow_after=config.slow_after,
        reset_s=config.breaker_reset_ms / 1000,
        max_reset_s=config.breaker_max_reset_ms / 1000,
    )


class SessionBreakers:
    """The breakers of every session one sender has delivered to."""

    def __init__(self, clock: Clock, observer: Observer) -> None:
        self._clock = clock
        self._observer = observer
        self._known: dict[str, tuple[Breaker, tuple[int, str] | None]] = {}

    def of(self, session: str, info: SessionInfo | None, config: Config) -> Breaker:
        """The session's breaker, under ``config``; a new server behind the session starts it afresh."""
        settings = breaker_settings(config)
        identity = (info.pid, info.webhook_url) if info is not None else None
        known = self._known.get(session)
        if known is None:
            breaker = Breaker(settings, self._clock.monotonic, partial(self._changed, session))
            self._known[session] = (breaker, identity)
            return breaker
        breaker, seen = known
        breaker.configure(settings)
        if identity is not None and identity != seen:
            if seen is not None:
                breaker.reset()  # what the old server did says nothing about the new one
            self._known[session] = (breaker, identity)
        return breaker

    def snapshots(self) -> Mapping[str, BreakerSnapshot]:
        """Each session's breaker; ``next_probe_at`` is in unix time here."""
        now, mono = self._clock.wall(), self._clock.monotonic()
        return {
            session: _wall(breaker.snapshot(), now, mono) for session, (breaker, _) in self._known.items()
        }

    @staticmethod
    @contextmanager
    def blaming(response: Response) -> Iterator[None]:
        """Within the block, a breaker transition names ``response`` as its cause."""
        token = _CAUSE.set(response)
        try:
            yield
        finally:
            _CAUSE.reset(token)

    def _changed(self, session: str, snapshot: BreakerSnapshot) -> None:
        wall = _wall(snapshot, self._clock.wall(), self._clock.monotonic())
        cause = _CAUSE.get()
        self._observer.emit(
            Event(
                "breaker",
                session=session,
                response_id=cause.id if cause else None,
                correlation_id=cause.correlation_id if cause else None,
                level="warning" if snapshot.state == "open" else "info",
                reason=snapshot.reason or None,
                fields={
                    "state": snapshot.state,
                    "failures": snapshot.failures,
                    "slow": snapshot.slow,
                    "next_probe_at": wall.next_probe_at,
                },
            )
        )


def _wall(snapshot: BreakerSnapshot, now: float, mono: float) -> BreakerSnapshot:
    if snapshot.next_probe_at is None:
        return snapshot
    return replace(snapshot, next_probe_at=round(now + (snapshot.next_probe_at - mono), 3))
