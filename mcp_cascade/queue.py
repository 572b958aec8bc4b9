"""The queue interface of DESIGN 10, and its local implementation (the tier-3 maildir).

A queue carries responses to one session durably: a producer *enqueues* (when
it returns, the response survives a crash of either side); the consumer
*claims* the next items, hands each to the engine and then *acks* it (gone for
good) or *nacks* it (another try later, or quarantine when the item itself is
bad); *recover* at start-up puts back whatever a dead consumer had claimed.

Two implementations: :class:`MaildirQueue` (a directory on this host, below)
and :class:`mcp_cascade.remote.jetstream.JetStreamQueue` (a NATS JetStream
subject, for a session on another host). The sender's walk enqueues through
whichever the session's place calls for, and the consumer loop
(:func:`mcp_cascade.remote.consume.consume`) runs over either one without
knowing which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from mcp_cascade.inbox import Claimed, Failed, Maildir, enqueue
from mcp_cascade.response import Response

__all__ = ["Item", "MaildirQueue", "Queue", "Unusable"]


@dataclass(frozen=True, slots=True)
class Item:
    """One claimed response; ``token`` is what the implementation needs to ack or nack it."""

    response: Response
    token: object
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Unusable:
    """A claimed entry that can never become a response (unreadable, unsigned, malformed)."""

    reason: str
    token: object


class Queue(Protocol):
    """Durable delivery of responses to one session: enqueue, claim, ack, nack, recover."""

    name: str  # what logs and receipts call this queue: "inbox", "jetstream"

    async def enqueue(self, response: Response, timeout: float) -> str:
        """Make ``response`` durable for the session within ``timeout`` seconds; return where it is.

        Raises TimeoutError or OSError (or the implementation's transport error) when it is not.
        """

    async def claim(self, limit: int, timeout: float) -> Sequence[Item | Unusable]:
        """Up to ``limit`` entries in queue order, waiting at most ``timeout`` seconds for the first."""

    async def ack(self, item: Item) -> None:
        """The engine has the response durably: the queue forgets it (confirmed before returning)."""

    async def nack(self, item: Item | Unusable, reason: str, *, permanent: bool) -> None:
        """Not taken: try again later, or (``permanent``) quarantine it with ``reason``."""

    async def recover(self) -> int:
        """Start-up: make entries a dead consumer had claimed claimable again; how many there were."""


class MaildirQueue:
    """The queue over a session's inbox maildir (DESIGN 6), for the consumer and producer alike."""

    name = "inbox"

    def __init__(self, root: Path, session: str, *, settle_s: float = 0.5) -> None:
        self.maildir = Maildir(root, session, settle_s=settle_s)

    async def enqueue(self, response: Response, timeout: float) -> str:
        """Atomic write into ``new/`` (tmp, fsync, rename, fsync of the folder)."""
        with anyio.fail_after(timeout):
            done = await anyio.to_thread.run_sync(
                enqueue, self.maildir.root, response, abandon_on_cancel=True
            )
        return str(done.path)

    async def claim(self, limit: int, timeout: float) -> Sequence[Item | Unusable]:
        """Claim up to ``limit`` files of ``new/`` into ``cur/``, in durable order (no waiting here)."""

        def take() -> list[Item | Unusable]:
            self.maildir.ensure()
            found: list[Item | Unusable] = []
            for name in self.maildir.scan():
                if len(found) >= limit:
                    break
                taken = self.maildir.take(name)
                if isinstance(taken, Claimed):
                    found.append(Item(taken.response, taken.name))
                elif isinstance(taken, Failed):
                    found.append(Unusable(taken.reason, taken.name))
            return found

        found = await anyio.to_thread.run_sync(take)
        if not found:
            await anyio.sleep(min(timeout, 0.05))
        return found

    async def ack(self, item: Item) -> None:
        """Remove the claimed file."""
        await anyio.to_thread.run_sync(self.maildir.ack, [str(item.token)])

    async def nack(self, item: Item | Unusable, reason: str, *, permanent: bool) -> None:
        """Back into ``new/``, or into ``failed/`` with a reason file (a bad file is already there)."""
        if isinstance(item, Unusable):
            return  # take() moved it to failed/ already
        if permanent:
            await anyio.to_thread.run_sync(lambda: self.maildir.fail(str(item.token), reason, claimed=True))
        else:
            await anyio.to_thread.run_sync(self.maildir.requeue, [str(item.token)])

    async def recover(self) -> int:
        """Everything in ``cur/`` back to ``new/``; stale ``tmp/`` files removed."""

        def run() -> int:
            self.maildir.ensure()
            return len(self.maildir.recover().requeued)

        return await anyio.to_thread.run_sync(run)
