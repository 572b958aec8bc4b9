"""The one rule that turns a tier's facts into ``ok`` / ``degraded`` / ``down`` (pure, no I/O).

A tier is **down** when it cannot carry a response into the session at all (a
fatal problem: nothing can be made durable through it, or nothing durable in it
is ever read), **degraded** when it can but something delays or endangers
delivery (a non-fatal problem), **ok** otherwise. A process is **down** when every one of
its tiers is down (no path can take a response), **degraded** when any tier is
not ok or its oldest undelivered response is older than the overall timeout,
**ok** otherwise. Each problem is a sentence an operator can act on, reported
beside the status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "degraded", "down"]
# An error this recent still degrades its tier.
RECENT_ERROR_S = 60.0


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a tier; ``fatal`` when the tier cannot carry responses at all."""

    text: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class LastError:
    """The most recent error of a tier, with when it happened (unix seconds)."""

    at: float
    error: str

    def recent(self, now: float) -> bool:
        """Whether it happened within :data:`RECENT_ERROR_S`."""
        return now - self.at <= RECENT_ERROR_S

    def to_dict(self) -> dict[str, float | str]:
        """The health JSON form."""
        return {"at": round(self.at, 3), "error": self.error}


def latest_error(candidates: Iterable[LastError | None]) -> LastError | None:
    """The most recent of ``candidates`` (None when there is none)."""
    found = [c for c in candidates if c is not None]
    return max(found, key=lambda e: e.at) if found else None


def error_json(value: LastError | None) -> dict[str, float | str] | None:
    """The health JSON form of an optional error."""
    return None if value is None else value.to_dict()


def tier_status(problems: Iterable[Problem]) -> Status:
    """``down`` with any fatal problem, ``degraded`` with any other, else ``ok``."""
    found = list(problems)
    if any(p.fatal for p in found):
        return "down"
    return "degraded" if found else "ok"


def overall_status(
    tiers: Mapping[str, Status], *, oldest_pending_age_s: float, overall_timeout_s: float
) -> Status:
    """``down`` when every tier is down, ``degraded`` when any is not ok or a response is overdue."""
    statuses = set(tiers.values())
    if not statuses or statuses == {"down"}:
        return "down"
    if statuses != {"ok"} or oldest_pending_age_s > overall_timeout_s:
        return "degraded"
    return "ok"


@dataclass(frozen=True, slots=True)
class WebhookFacts:
    """What serve knows about its tier-1/2 entry point (the sidecar and the store behind it)."""

    listening: bool
    store_writable: bool
    client_attached: bool
    queue_depth: int
    last_error: LastError | None


def webhook_problems(facts: WebhookFacts, now: float) -> list[Problem]:
    """The webhook tier's problems (tier 2 redeliveries use the same endpoint)."""
    problems: list[Problem] = []
    if not facts.listening:
        problems.append(Problem("the sidecar is not listening", fatal=True))
    if not facts.store_writable:
        problems.append(Problem("the session store cannot be written (webhooks answer 503)", fatal=True))
    if not facts.client_attached and facts.queue_depth > 0:
        waiting = "1 response waits" if facts.queue_depth == 1 else f"{facts.queue_depth} responses wait"
        problems.append(Problem(f"{waiting}: no MCP client has initialized this session"))
    if facts.last_error is not None and facts.last_error.recent(now):
        problems.append(Problem(f"error {now - facts.last_error.at:.0f}s ago: {facts.last_error.error}"))
    return problems


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the inbox watcher knows about tier 3.

    ``rescan_age_s`` is the time since the last full rescan (None before the
    first); ``failing`` maps each part of the watcher that is broken right now
    (``inbox watch``, ``legacy folder``...) to what went wrong.
    """

    inbox_writable: bool
    watcher_alive: bool
    watch_armed: bool
    rescan_age_s: float | None
    rescan_interval_s: float
    stalled: int
    failing: Mapping[str, str]


def file_problems(facts: FileFacts) -> list[Problem]:
    """The file tier's problems."""
    problems: list[Problem] = []
    if not facts.inbox_writable:
        problems.append(Problem("the inbox cannot be written (tier-3 senders fail)", fatal=True))
    if not facts.watcher_alive:
        problems.append(Problem("the inbox watcher has stopped: files stay in inbox/new", fatal=True))
    problems.extend(Problem(message) for _, message in sorted(facts.failing.items()))
    if not facts.watch_armed and "inbox watch" not in facts.failing:
        problems.append(
            Problem(
                f"inbox/new is not watched: files wait for the rescan (every {facts.rescan_interval_s:g}s)"
            )
        )
    if facts.rescan_age_s is None:
        problems.append(Problem("no rescan of inbox/new yet"))
    elif facts.rescan_age_s > 3 * facts.rescan_interval_s + 1.0:
        problems.append(
            Problem(
                f"last rescan {facts.rescan_age_s:.1f}s ago (every {facts.rescan_interval_s:g}s expected)"
            )
        )
    if facts.stalled:
        waiting = "1 claimed file waits" if facts.stalled == 1 else f"{facts.stalled} claimed files wait"
        problems.append(Problem(f"{waiting} for the store to take them"))
    return problems


@dataclass(frozen=True, slots=True)
class BridgeFacts:
    """What the bridge knows about its tier (2: answers in from Telegram, acknowledgment, redelivery).

    ``telegram_ok_age_s`` is the time since the last successful Bot API call
    (None before the first); ``breakers`` maps each session whose breaker is not
    closed to its state and the unix time of its next probe; the oldest pending
    age is that of the bridge's outbox.
    """

    telegram_ok_age_s: float | None
    telegram_failures: int
    telegram_error: str | None
    stale_after_s: float
    breakers: Mapping[str, tuple[str, float | None]]
    oldest_pending_age_s: float
    overall_timeout_s: float


def bridge_problems(facts: BridgeFacts, now: float) -> list[Problem]:
    """The bridge tier's problems."""
    problems: list[Problem] = []
    if facts.telegram_failures:
        calls = f"{facts.telegram_failures} failed call{'s' if facts.telegram_failures > 1 else ''}"
        error = f": {facts.telegram_error}" if facts.telegram_error else ""
        if facts.telegram_ok_age_s is None:
            problems.append(Problem(f"Telegram has not answered yet ({calls}){error}", fatal=True))
        elif facts.telegram_ok_age_s > facts.stale_after_s:
            problems.append(
                Problem(
                    f"Telegram has not answered for {facts.telegram_ok_age_s:.0f}s ({calls}){error}",
                    fatal=True,
                )
            )
        else:
            problems.append(Problem(f"Telegram calls are failing ({calls}){error}"))
    for session, (state, next_probe_at) in sorted(facts.breakers.items()):
        probe = f", next probe in {max(0.0, next_probe_at - now):.1f}s" if next_probe_at is not None else ""
        problems.append(Problem(f"breaker towards {session} is {state.replace('_', '-')}{probe}"))
    if facts.oldest_pending_age_s > facts.overall_timeout_s:
        problems.append(
            Problem(
                f"a response has waited {facts.oldest_pending_age_s:.0f}s in the outbox "
                f"(overall timeout {facts.overall_timeout_s:g}s)"
            )
        )
    return problems
