"""The faults a scenario applies to every session at once, and their repair.

Kept apart from the schedules (:mod:`mcp_cascade.soak.scenarios`) so that a
scenario defined in its own module uses them without importing the list of
scenarios that imports it.
"""

from __future__ import annotations

import time

from mcp_cascade.soak.run import Context
from mcp_cascade.testing.faults import Fault

_TIER2_ONLY = b"x-cascade-tier: 2"


async def webhook(ctx: Context, kind: str) -> None:
    """Break the way to every session's sidecar: refused, a proxy fault, or first attempts only."""
    for rig in ctx.rigs:
        if kind == "refused":
            await rig.proxy.refuse()
        elif kind == "first_attempts":
            rig.proxy.set(Fault.RESET, unless=_TIER2_ONLY)
        else:
            rig.proxy.set(kind, latency_s=0.3, trickle_bytes=1, trickle_interval_s=0.02)


async def webhook_ok(ctx: Context) -> None:
    """Every sidecar reachable again."""
    for rig in ctx.rigs:
        await rig.proxy.listen()
        rig.proxy.set(Fault.PASS)


def break_inbox(ctx: Context) -> None:
    """Make every inbox unwritable for the sender: its tmp/ becomes a plain file (root ignores modes)."""
    for rig in ctx.rigs:
        tmp = rig.paths.inbox / "tmp"
        tmp.rename(tmp.with_name(f"tmp.aside-{time.time_ns()}"))
        tmp.write_bytes(b"")


def heal_inbox(ctx: Context) -> None:
    """Give every inbox its tmp/ folder back."""
    for rig in ctx.rigs:
        tmp = rig.paths.inbox / "tmp"
        tmp.unlink(missing_ok=True)
        (aside,) = sorted(tmp.parent.glob("tmp.aside-*"))[-1:]
        aside.rename(tmp)
