"""The poison scenario: what no tier can carry, interleaved with the good stream on every tier.

Signed webhooks (as tier 1 and as tier 2's redelivery) with lone surrogates,
NaN, numbers past 64 bits, keys the server owns in ``meta``, ids past their
syntax and a head past the header cap; inbox files with the same bodies, bytes
that are not UTF-8, names that are not UTF-8, folders in ``new/`` and a folder
planted in ``cur/`` in the way of a claim. Meanwhile the good stream is carried
by each tier in turn. The good responses are counted as in every scenario; the
poisons must each be refused (4xx) or set aside in ``failed/`` and counted in
``mcp_cascade_quarantined_total``, and each ``serve`` keeps its pid throughout.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from mcp_cascade.ops.scrape import fetch
from mcp_cascade.response import Response
from mcp_cascade.sessions import read_session
from mcp_cascade.signing import Signer, load_or_create_secret, sign_tier
from mcp_cascade.soak.rig import Rig
from mcp_cascade.soak.run import Context
from mcp_cascade.soak.steps import break_inbox, heal_inbox, webhook, webhook_ok

_QUARANTINED = "mcp_cascade_quarantined_total"


def raw_body(response_id: str, text: bytes = b'"fine"', **fields: bytes) -> bytes:
    """A body written as JSON text, so it can hold what ``json.dumps`` would never produce."""
    parts = {
        "id": json.dumps(response_id).encode(),
        "type": b'"message"',
        "user": b'{"id": 4242}',
        "timestamp": json.dumps(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())).encode(),
        "text": text,
        **fields,
    }
    return b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in parts.items()) + b"}"


# Each makes the body of a poison from a fresh id; the id the webhook is signed under may differ.
BODIES: dict[str, Callable[[str], bytes]] = {
    "lone surrogate": lambda rid: raw_body(rid, b'"bad \\ud800 x"'),
    "emoji sliced mid-pair": lambda rid: raw_body(rid, b'"ok \\ud83d"'),
    "surrogate in a meta key": lambda rid: raw_body(rid, meta=b'{"a\\udc00": "v"}'),
    "NaN": lambda rid: raw_body(rid, chat_id=b"NaN"),
    "-Infinity": lambda rid: raw_body(rid, message_id=b"-Infinity"),
    "1e400": lambda rid: raw_body(rid, chat_id=b"1e400"),
    "2^64": lambda rid: raw_body(rid, user=b'{"id": 18446744073709551616}'),
    "server-owned meta": lambda rid: raw_body(
        rid, meta=b'{"redelivered": "true", "response_id": "x", "chat_id": "1", "tier": "1"}'
    ),
    "year 9999": lambda rid: raw_body(rid, timestamp=b'"9999-12-31T23:59:59-23:59"'),
    "id of 10,000 characters": lambda rid: raw_body(rid + "x" * 10_000),
}


@dataclass(frozen=True, slots=True)
class Slot:
    """One kind of poison on one tier."""

    tier: int  # 1, 2 (a webhook claiming tier 2's redelivery) or 3 (the inbox)
    kind: str


def slots() -> list[Slot]:
    """Every kind on every tier it can arrive by."""
    webhook = [*BODIES, "webhook-id of 129 characters", "64 KiB webhook-id header", "body not UTF-8"]
    inbox = [*BODIES, "body not UTF-8", "name not UTF-8", "folder in new/", "folder in cur/ in the way"]
    return [Slot(t, k) for t in (1, 2) for k in webhook] + [Slot(3, k) for k in inbox]


class Poisoner:
    """Sends poisons to the sessions of a run and keeps what became of each."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.signer = Signer(load_or_create_secret(ctx.home))
        self.client = httpx.AsyncClient(timeout=30.0)
        self.statuses: Counter[str] = Counter()  # webhook answers, "<tier>:<status>"
        self.files: Counter[str] = Counter()  # inbox poisons planted, per session
        self.sent = 0

    async def send(self, slot: Slot, rig: Rig) -> None:
        """One poison of ``slot`` to ``rig``'s session."""
        self.sent += 1
        rid = f"poison:{rig.session}:{self.sent:06d}"
        if slot.tier == 3:
            await anyio.to_thread.run_sync(self._plant, slot.kind, rig, rid)
            self.files[rig.session] += 1
            return
        body = BODIES[slot.kind](rid) if slot.kind in BODIES else raw_body(rid)
        msg_id = rid
        if slot.kind == "webhook-id of 129 characters":
            msg_id = rid + "x" * (129 - len(rid))
            body = raw_body(msg_id)
        elif slot.kind == "64 KiB webhook-id header":
            msg_id = rid + "x" * (65_536 - len(rid))
        headers = self.signer.headers(msg_id, body) | {"content-type": "application/json"}
        if slot.tier == 2:
            headers |= sign_tier(self.signer, headers, 2)
        if slot.kind == "body not UTF-8":
            body = body.replace(b'"fine"', b'"\xff\xfe fine"')
        try:
            answer = await self.client.post(rig.direct_url, content=body, headers=headers)
            status = str(answer.status_code)
        except httpx.HTTPError as exc:  # a refusal by closing the connection is counted apart, and fails
            status = type(exc).__name__
        self.statuses[f"{slot.tier}:{status}"] += 1

    def _plant(self, kind: str, rig: Rig, rid: str) -> None:
        inbox = rig.paths.inbox
        name = f"{time.time_ns():020d}-{rid.replace(':', '_')}.json"
        if kind == "folder in new/":
            (inbox / "new" / name).mkdir()
            return
        if kind == "folder in cur/ in the way":
            # The file behind it is a late copy of a response the session already has (as an upstream's
            # resend would be): the folder steps aside, the copy is claimed and recognised as delivered.
            (inbox / "cur" / name).mkdir()
            _drop(inbox, name, self._delivered(rig).to_json())
            return
        body = BODIES[kind](rid) if kind in BODIES else raw_body(rid, b'"\xff\xfe fine"')
        if kind == "name not UTF-8":
            name = name.removesuffix(".json") + os.fsdecode(b"\xff") + ".json"
        _drop(inbox, name, body)

    def _delivered(self, rig: Rig) -> Response:
        seen = self.ctx.seen()
        for sent in self.ctx.tally.sent.values():
            if sent.session == rig.session and sent.response_id in seen and sent.response is not None:
                return sent.response
        raise RuntimeError(f"{rig.session} has received no response yet")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


def _drop(inbox: Path, name: str, data: bytes) -> None:
    """Write beside new/ and rename into it (without fsync: no crash here).

    Not through tmp/: while the tier-2 phase lasts, tmp/ is a plain file, so the sender cannot use
    the inbox, but serve still reads new/ and the poisons keep coming.
    """
    tmp = inbox / f".poison-{name}"
    tmp.write_bytes(data)
    tmp.rename(inbox / "new" / name)


def _failed(rig: Rig) -> int:
    return sum(1 for p in (rig.paths.inbox / "failed").iterdir() if p.name.endswith(".reason"))


# (webhook fault, inbox unwritable too, what it makes of the good stream, the tier that must carry it).
# Tier 2 alone carries only with the inbox closed: on a busy machine the inbox, tried beside tier 2's
# redelivery, otherwise answers first.
PHASES = (
    ("refused", False, "webhook refused: good responses by the inbox", 3),
    ("first_attempts", True, "first attempts reset, inbox unwritable: good responses by tier 2", 2),
)


async def poison(ctx: Context) -> None:
    """Poisons at an even pace through the run while the good stream goes by tier 1, then 3, then 2."""
    pids = {rig.session: rig.pid for rig in ctx.rigs}
    before = {rig.session: _failed(rig) for rig in ctx.rigs}
    kinds = slots()
    poisoner = Poisoner(ctx)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_tiers_in_turn, ctx)
            count = max(len(kinds) * 2, ctx.total // 20)
            for n in range(count):
                await ctx.at(0.02 + 0.9 * n / count)
                await poisoner.send(kinds[n % len(kinds)], ctx.rigs[(n // len(kinds)) % len(ctx.rigs)])
    finally:
        await poisoner.aclose()
    await _judge(ctx, poisoner, pids, before, len(kinds))


async def _tiers_in_turn(ctx: Context) -> None:
    for n, (fault, inbox, label, carrier) in enumerate(PHASES):
        await ctx.at(0.1 + 0.45 * n)  # or later, when tier 1 took long to return from the last phase
        await webhook(ctx, fault)
        if inbox:
            break_inbox(ctx)
        ctx.log(label, "apply")
        applied = time.perf_counter()
        await anyio.sleep(0.25 * ctx.nominal_s)
        ctx.expect(label, carrier, applied + 0.05, time.perf_counter())
        if inbox:
            heal_inbox(ctx)
        await webhook_ok(ctx)
        ctx.log(label, "clear")
        await ctx.back_on_tier1(label)


async def _judge(
    ctx: Context, poisoner: Poisoner, pids: dict[str, int], before: dict[str, int], kinds: int
) -> None:
    """Wait for every planted file to be set aside, then read each serve's counters and pid."""
    with anyio.move_on_after(30):
        while any(_failed(r) - before[r.session] < poisoner.files[r.session] for r in ctx.rigs):  # noqa: ASYNC110
            await anyio.sleep(0.05)  # no event tells the harness that serve moved a file
    set_aside = {r.session: _failed(r) - before[r.session] for r in ctx.rigs}
    counted: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=30.0) as client:
        for rig in ctx.rigs:
            info = read_session(ctx.home, rig.session)
            assert info is not None
            scrape = await fetch(client, info.health_url.replace("/health", "/metrics"))
            assert scrape is not None, "serve's metrics are disabled"
            for series in scrape.select(_QUARANTINED):
                if series.value:
                    key = f"{rig.session} tier {series.labels['tier']} {series.labels['reason']}"
                    counted[key] += int(series.value)
    counted_inbox = {
        r.session: sum(n for k, n in counted.items() if k.startswith(f"{r.session} tier 3 "))
        for r in ctx.rigs
    }
    webhook = sum(n for k, n in poisoner.statuses.items() if not k.startswith("3:"))
    refused = sum(n for k, n in poisoner.statuses.items() if k.split(":")[1].startswith("4"))
    ctx.figures["poisons"] = {
        "sent": poisoner.sent,
        "webhook_answers": dict(sorted(poisoner.statuses.items())),
        "inbox_planted": dict(poisoner.files),
        "inbox_set_aside": set_aside,
        "quarantined_total": dict(sorted(counted.items())),
        "serve_pids": pids,
    }
    ctx.checks[f"all {kinds} poison kinds sent on their tiers"] = poisoner.sent >= kinds
    ctx.checks[f"every webhook poison refused with a 4xx ({refused} of {webhook})"] = refused == webhook
    ctx.checks["every inbox poison set aside in failed/ with a reason"] = set_aside == dict(poisoner.files)
    ctx.checks["every inbox poison counted in mcp_cascade_quarantined_total"] = counted_inbox == dict(
        poisoner.files
    )
    ctx.checks["serve never restarted (same pid throughout)"] = all(
        r.pid == pids[r.session] and not r.kills and not r.crashes for r in ctx.rigs
    )
