"""Flood control: one outbound scheduler per bot, so Telegram never has to say 429.

Telegram's published limits: about one message per second in a chat (short
bursts tolerated), twenty per minute in a group, thirty per second over all
chats. Each chat has a token bucket at its limit, and every send, edit and
reaction takes a token from its chat's bucket and from the bot's. Waiters of
one chat are served by priority (permission prompts and receipts before the
parts of a long reply), then in arrival order. A 429 blocks the chat for
exactly its ``retry_after``: nothing goes to that chat before the time is up.

:class:`Gate` is the pure arithmetic (an injected ``now``); :class:`Scheduler`
waits on it with an injected :class:`~mcp_cascade.clock.Clock`.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import IntEnum

import anyio

from mcp_cascade.clock import SYSTEM, Clock

GLOBAL = 0  # Telegram chat ids are never 0: the key of the bot-wide bucket


class Priority(IntEnum):
    """Lower goes first among the waiters of one chat."""

    URGENT = 0  # permission prompts, receipts, button feedback
    NORMAL = 1  # questions, notices
    BULK = 2  # the parts of a long reply, files


@dataclass(frozen=True, slots=True)
class FloodLimits:
    """Messages per second in a private chat (with ``burst``), per minute in a group, per second in all."""

    chat_per_s: float = 1.0
    group_per_min: float = 20.0
    global_per_s: float = 30.0
    burst: int = 3


def is_group(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; people's private chats positive ones."""
    return chat_id < 0


@dataclass(slots=True)
class _Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    stamp: float
    blocked_until: float = 0.0

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready_at(self, now: float) -> float:
        self.refill(now)
        at = now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate
        return max(at, self.blocked_until)


@dataclass
class Gate:
    """Token buckets per chat and for the bot; pure (every method takes ``now``)."""

    limits: FloodLimits = field(default_factory=FloodLimits)
    _buckets: dict[int, _Bucket] = field(default_factory=dict)

    def _bucket(self, key: int, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            lim = self.limits
            if key == GLOBAL:
                rate, capacity = lim.global_per_s, 1.0  # evenly spread: any second holds at most N+1
            elif is_group(key):
                # No burst in groups: one token every 60/N s keeps any minute at N.
                rate, capacity = lim.group_per_min / 60, 1.0
            else:
                rate, capacity = lim.chat_per_s, float(max(1, lim.burst))
            bucket = self._buckets[key] = _Bucket(rate, capacity, capacity, now)
        return bucket

    def ready_at(self, chat_id: int, now: float) -> float:
        """The earliest time a message to ``chat_id`` may go."""
        return max(self._bucket(chat_id, now).ready_at(now), self._bucket(GLOBAL, now).ready_at(now))

    def take(self, chat_id: int, now: float) -> None:
        """Spend one token of the chat and one of the bot (call when :meth:`ready_at` ≤ now)."""
        for key in (chat_id, GLOBAL):
            bucket = self._bucket(key, now)
            bucket.refill(now)
            bucket.tokens -= 1

    def block(self, chat_id: int, until: float, now: float) -> None:
        """Telegram said 429: nothing to ``chat_id`` (or anywhere, for GLOBAL) before ``until``."""
        bucket = self._bucket(chat_id, now)
        bucket.blocked_until = max(bucket.blocked_until, until)
        bucket.tokens = min(bucket.tokens, 0.0)

    def blocked_until(self, chat_id: int) -> float:
        """When the chat's last 429 ends (0 when never blocked)."""
        bucket = self._buckets.get(chat_id)
        return bucket.blocked_until if bucket else 0.0


class Scheduler:
    """Waits for a chat's turn by priority; one per bot."""

    def __init__(self, limits: FloodLimits | None = None, *, clock: Clock = SYSTEM) -> None:
        self.gate = Gate(limits or FloodLimits())
        self._clock = clock
        self._queues: dict[int, list[tuple[int, int]]] = {}
        self._changed: dict[int, anyio.Event] = {}
        self._seq = itertools.count()

    def configure(self, limits: FloodLimits) -> None:
        """New limits (a config reload); buckets start afresh, 429 blocks are kept."""
        if limits != self.gate.limits:
            old = self.gate
            self.gate = Gate(limits)
            now = self._clock.monotonic()
            for key, bucket in old._buckets.items():
                if bucket.blocked_until > now:
                    self.gate.block(key, bucket.blocked_until, now)

    def _notify(self, chat_id: int) -> None:
        event = self._changed.pop(chat_id, None)
        if event is not None:
            event.set()

    async def turn(self, chat_id: int, priority: Priority = Priority.NORMAL) -> None:
        """Return when a message to ``chat_id`` may go now (its token is spent)."""
        ticket = (int(priority), next(self._seq))
        queue = self._queues.setdefault(chat_id, [])
        heapq.heappush(queue, ticket)
        self._notify(chat_id)  # a sleeping head may no longer be the head
        try:
            while True:
                if queue[0] == ticket:
                    now = self._clock.monotonic()
                    at = self.gate.ready_at(chat_id, now)
                    if at <= now:
                        self.gate.take(chat_id, now)
                        return
                    # A newcomer of higher priority becomes the head meanwhile and waits for the
                    # same moment; whoever is the head when it comes takes the token.
                    await self._clock.sleep(at - now)
                else:
                    await self._changed.setdefault(chat_id, anyio.Event()).wait()
        finally:
            queue.remove(ticket)
            heapq.heapify(queue)
            if not queue:
                del self._queues[chat_id]
            self._notify(chat_id)

    def retry_after(self, chat_id: int, seconds: float) -> float:
        """Record a 429 for ``chat_id``; returns the monotonic time before which nothing may go there."""
        now = self._clock.monotonic()
        until = now + seconds
        self.gate.block(chat_id, until, now)
        self._notify(chat_id)
        return until
