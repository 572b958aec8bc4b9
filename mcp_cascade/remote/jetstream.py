"""The queue interface over NATS JetStream: one stream, one subject and one durable consumer per session.

Stream ``CASCADE`` holds ``cascade.to.<session>`` with work-queue retention
(a message is gone once its session acks it), file storage, ``nats_replicas``
copies, ``nats_dup_window_s`` of publish-side deduplication on ``Nats-Msg-Id``
(the response id) and the retention period as its maximum age.

Each session consumes through the durable pull consumer ``session-<id>``:
explicit acks, up to ``BATCH`` messages in flight, fetched in batches, unlimited
deliveries (a message is never dropped by the server; a bad one is terminated
by the session with a reason, never redelivered forever), and acks that wait
for the server's confirmation (``ack_sync``), so a lost ack is a known failure.
A message is acked once the session's store holds it (the store's sequence
orders the pushes; its id memory absorbs any redelivery). A redelivery after
``ack_wait`` could overtake newer messages (nats-server #6114), so the queue
never lets one happen in flight: whenever the in-order flow breaks (a start
after a crash, a lost ack, a store that cannot write) it *rewinds*: deletes the
consumer and creates it again, and with work-queue retention the new one
starts at the oldest unacked message, in stream order.

Every message is signed like a webhook (Standard Webhooks headers over the
body, the deployment secret), so access to the NATS account alone cannot put
an answer into a session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from mcp_cascade.config import Config
from mcp_cascade.errors import InvalidResponse, SignatureError
from mcp_cascade.queue import Item, Unusable
from mcp_cascade.response import Response, from_json
from mcp_cascade.signing import Signer

__all__ = [
    "ACK_WAIT_S",
    "RECEIPT_HEADER",
    "STREAM",
    "JetStreamQueue",
    "consumer_name",
    "ensure_stream",
    "subject",
]

STREAM = "CASCADE"
SUBJECTS = "cascade.to.>"
RECEIPT_HEADER = "Cascade-Receipt-To"
MSG_ID_HEADER = "Nats-Msg-Id"
# Longer than a claim takes (a store commit and a push, at most a few seconds on a sick disk); the
# session also reports progress while it works, so a slow disk never turns into a redelivery storm.
ACK_WAIT_S = 10.0
BATCH = 64  # messages in flight per session: one fetch, committed by the store in order, then the acks
_ACK_TIMEOUT_S = 2.0


def subject(session: str) -> str:
    """The subject a session's messages are published on."""
    return f"cascade.to.{session}"


def consumer_name(session: str) -> str:
    """The session's durable consumer."""
    return f"session-{session}"


def stream_config(config: Config) -> api.StreamConfig:
    """The stream every host of a deployment shares."""
    return api.StreamConfig(
        name=STREAM,
        subjects=[SUBJECTS],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        num_replicas=config.nats_replicas,
        duplicate_window=float(config.nats_dup_window_s),
        max_age=float(config.retention_days * 86400),
    )


async def ensure_stream(js: JetStreamContext, config: Config) -> None:
    """Create the stream if it is missing; an existing one gets this host's duplicate window if longer."""
    wanted = stream_config(config)
    try:
        info = await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(wanted)
        return
    if (info.config.duplicate_window or 0) < float(config.nats_dup_window_s):
        info.config.duplicate_window = float(config.nats_dup_window_s)
        await js.update_stream(info.config)


class JetStreamQueue:
    """One session's queue on JetStream; the producer side needs only ``js`` and the signer."""

    name = "jetstream"

    def __init__(
        self,
        js: JetStreamContext,
        session: str,
        signer: Signer,
        *,
        receipt_to: str | None = None,
        tolerance_s: float = 7 * 86400,
    ) -> None:
        self.js = js
        self.session = session
        self.signer = signer
        self.receipt_to = receipt_to
        self.tolerance_s = tolerance_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._rewind = False

    async def enqueue(self, response: Response, timeout: float) -> str:
        """Publish and wait for the PubAck: then the stream holds it (on a quorum of its replicas).

        Raises TimeoutError (no PubAck in time) or ConnectionError (not sent, or refused).
        """
        body = response.to_json()
        headers = self.signer.headers(response.id, body)
        headers[MSG_ID_HEADER] = response.id
        headers["X-Correlation-ID"] = response.correlation_id
        if self.receipt_to:
            headers[RECEIPT_HEADER] = self.receipt_to
        try:
            ack = await self.js.publish(
                subject(self.session), body, timeout=timeout, stream=STREAM, headers=headers
            )
        except (nats.errors.TimeoutError, TimeoutError) as exc:
            raise TimeoutError(f"no PubAck within {timeout * 1000:.0f} ms") from exc
        except (OSError, nats.errors.Error) as exc:
            raise ConnectionError(f"publish failed: {exc!r}") from exc
        return f"stream {ack.stream} seq {ack.seq}" + (" (already there)" if ack.duplicate else "")

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        if self._sub is None:
            self._sub = await self.js.pull_subscribe(
                subject(self.session),
                durable=consumer_name(self.session),
                stream=STREAM,
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.ALL,
                    max_ack_pending=BATCH,
                    ack_wait=ACK_WAIT_S,
                    max_deliver=-1,
                ),
            )
        return self._sub

    async def _reset(self) -> None:
        """Delete the consumer and create it again: it starts at the oldest unacked message, in order."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):  # the connection may have dropped it already
                await sub.unsubscribe()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_consumer(STREAM, consumer_name(self.session))
        self._rewind = False
        await self._subscription()

    async def claim(self, limit: int, timeout: float) -> Sequence[Item | Unusable]:
        """Up to ``min(limit, BATCH)`` messages in stream order (after a rewind, if one is due)."""
        if self._rewind:
            await self._reset()
        sub = await self._subscription()
        try:
            msgs = await sub.fetch(max(1, min(limit, BATCH)), timeout=timeout)
        except nats.errors.TimeoutError:
            return []
        return [self._open(msg) for msg in msgs]

    def _open(self, msg: Msg) -> Item | Unusable:
        headers = msg.headers or {}
        try:
            msg_id = self.signer.verify(headers, msg.data, tolerance_s=self.tolerance_s)
            response = from_json(msg.data)
        except SignatureError as exc:
            return Unusable(f"signature: {exc}", msg)
        except InvalidResponse as exc:
            return Unusable(f"{exc.kind}: {exc}", msg)
        if msg_id != response.id:
            return Unusable(f"webhook-id {msg_id!r} is not the body's id {response.id!r}", msg)
        if response.session not in (None, self.session):
            return Unusable(f"addressed to session {response.session!r}, this is {self.session!r}", msg)
        return Item(response, msg, redelivered=msg.metadata.num_delivered > 1)

    async def progress(self, item: Item) -> None:
        """Still working on it: restart the message's ``ack_wait``."""
        assert isinstance(item.token, Msg)
        await item.token.in_progress()

    async def ack(self, item: Item) -> None:
        """Acknowledge and wait for the server to confirm it."""
        assert isinstance(item.token, Msg)
        await item.token.ack_sync(timeout=_ACK_TIMEOUT_S)

    async def nack(self, item: Item | Unusable, reason: str, *, permanent: bool) -> None:
        """Terminate a bad message (never redelivered), or rewind before the next claim.

        A plain nak would let newer messages overtake this one while its delay runs; the rewind
        hands it out again first, with everything after it in order.
        """
        assert isinstance(item.token, Msg)
        if permanent:
            await item.token.term()
        else:
            self._rewind = True

    async def recover(self) -> int:
        """Rewind the durable consumer: what a dead consumer held comes back at once, in stream order."""
        try:
            info = await self.js.consumer_info(STREAM, consumer_name(self.session))
            held = int(info.num_ack_pending or 0)
        except nats.js.errors.NotFoundError:
            held = 0
        await self._reset()
        return held
