"""Audit completeness: every response's path through the tiers is in ``$HOME/audit.jsonl``, in order.

For each acknowledged response, the receipt that acknowledged it says which
tiers the sender tried; the session's first push says which tier carried it
into the session. The audit trail (written by every sender and serve process
on the home) must hold, under the receipt's correlation id, each of those
attempts in the receipt's order, a failover record for each step to a later
tier, and the final ``sent``; and from serve, ``durable`` (after ``claimed``
for the inbox) before ``pushed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcp_cascade.ops.audit import read_audit
from mcp_cascade.soak.tally import StreamTally


def _subsequence(wanted: Sequence[Any], found: Sequence[Any]) -> bool:
    it = iter(found)
    return all(any(item == got for got in it) for item in wanted)


def _problems(
    receipt: Mapping[str, Any], records: list[tuple[int, Mapping[str, Any]]], carrier: int | None
) -> list[str]:
    problems: list[str] = []
    cid = receipt.get("correlation_id")
    mine = [
        (pos, r) for pos, r in records if r.get("component") != "serve" and r.get("correlation_id") == cid
    ]
    attempts = [(a["tier"], a["outcome"]) for a in receipt.get("attempts", [])]
    recorded = [(r.get("tier"), r.get("outcome")) for _, r in mine if r.get("event") == "attempt"]
    if not _subsequence(attempts, recorded):
        problems.append(f"attempts {attempts} not all recorded in order (found {recorded})")
    failovers = [(r.get("from_tier"), r.get("to_tier")) for _, r in mine if r.get("event") == "failover"]
    for n, ((a, _), (b, _)) in enumerate(itertools.pairwise(attempts)):
        # From a to a later tier: failover records leave a tier tried before b and reach b (through a
        # tier with no attempt, e.g. tier 2 when its budget was already spent, there are two: a→2, 2→b;
        # when tier 1 fails over to 2 and 3 at once, 2's attempt may end before 3's: 1→2, 1→3).
        tried = {tier for tier, _ in attempts[: n + 1]}
        if b > a and not (any(f in tried for f, _ in failovers) and any(t == b for _, t in failovers)):
            problems.append(f"no failover record {a}→{b}")
    if not any(r.get("event") == "sent" and r.get("status") == receipt.get("status") for _, r in mine):
        problems.append(f"no 'sent' record with status {receipt.get('status')}")
    serve = [(pos, r) for pos, r in records if r.get("component") == "serve"]
    # ``recovered``: found in the store at a start-up (a kill may fall between commit and record).
    durable = [pos for pos, r in serve if r.get("event") in ("durable", "recovered")]
    pushed = [pos for pos, r in serve if r.get("event") == "pushed"]
    if not durable:
        problems.append("no 'durable' record from serve")
    if not pushed:
        problems.append("no 'pushed' record from serve")
    if durable and pushed and min(durable) > max(pushed):
        problems.append("'pushed' recorded before 'durable'")
    if (
        carrier is not None
        and durable
        and not any(r.get("event") in ("durable", "recovered") and r.get("tier") == carrier for _, r in serve)
    ):
        problems.append(f"no 'durable' record for tier {carrier}, the tier that carried it")
    if carrier == 3:
        claimed = [pos for pos, r in serve if r.get("event") == "claimed"]
        first_durable_3 = [pos for pos, r in serve if r.get("event") == "durable" and r.get("tier") == 3]
        if not claimed:
            problems.append("carried by the inbox but no 'claimed' record")
        elif first_durable_3 and min(claimed) > min(first_durable_3):
            problems.append("'durable' (tier 3) recorded before 'claimed'")
    return problems


def check_audit(homes: Path | Sequence[Path], tally: StreamTally) -> dict[str, Any]:
    """Check every acknowledged response's audit records; the counts and a few examples.

    Several homes (hosts sharing nothing but NATS) are read one after the other: a
    response's sender records are in one and its session's in another, and the
    order checked is always within one writer's records, so one home's.
    """
    records: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    total = 0
    trails = [read_audit(homes)] if isinstance(homes, Path) else [read_audit(home) for home in homes]
    for pos, record in enumerate(itertools.chain.from_iterable(trails)):
        total += 1
        rid = record.get("response_id")
        if isinstance(rid, str) and rid in tally.sent:
            records.setdefault(rid, []).append((pos, record))
    carriers: dict[str, int] = {}
    for push in sorted(tally.arrivals, key=lambda p: p.at):
        carriers.setdefault(push.response_id, push.tier or 0)
    checked = 0
    examples: dict[str, list[str]] = {}
    incomplete = 0
    for rid, sent in tally.sent.items():
        receipt = sent.final
        if not sent.acked or receipt is None:
            continue
        checked += 1
        problems = _problems(receipt, records.get(rid, []), carriers.get(rid))
        if problems:
            incomplete += 1
            if len(examples) < 5:
                examples[rid] = problems
    return {"records": total, "checked": checked, "incomplete": incomplete, "examples": examples}
