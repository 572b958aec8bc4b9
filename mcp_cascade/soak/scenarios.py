"""The fault schedules: what breaks, when, for how long, and which tier should carry the traffic meanwhile.

Every schedule paces itself on the scenario's progress (a fraction of its
responses), so a reduced run meets every fault the full run meets, only with
fewer responses in between. Each fault is described by what it is physically.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from mcp_cascade.soak.disk import SessionDisk
from mcp_cascade.soak.poison import poison
from mcp_cascade.soak.run import Context, Scenario
from mcp_cascade.soak.senders import WorkerSender
from mcp_cascade.soak.steps import break_inbox, heal_inbox, webhook, webhook_ok
from mcp_cascade.testing.faults import Fault

# Faster breaker probes than the defaults, so a run sees many failovers and returns.
_BREAKER = {"breaker_reset_ms": 200, "breaker_max_reset_ms": 800}


# --- the failover matrix ---------------------------------------------------------------------------

# (label, faults, the tier(s) that must carry the traffic while they last). With first attempts reset
# and the inbox open, tier 2's redelivery races the inbox's hedge (started once tier 1's budget is
# spent): on a quiet machine tier 2 wins, on a busy one the inbox may; the row with the inbox
# unwritable is the one that proves tier 2 alone.
MATRIX: tuple[tuple[str, Mapping[str, Any], int | tuple[int, ...]], ...] = (
    ("webhook refused (sidecar not listening)", {"webhook": "refused"}, 3),
    ("webhook black-holed", {"webhook": "blackhole"}, 3),
    ("sidecar answering 503", {"webhook": "http_503"}, 3),
    ("tier 1 alone: first attempts reset", {"webhook": "first_attempts"}, (2, 3)),
    ("tier 2 alone: acknowledgment failing", {"ack": True}, 1),
    ("tier 3 alone: inbox unwritable", {"inbox": True}, 1),
    ("tiers 1+2: refused, acknowledgment failing", {"webhook": "refused", "ack": True}, 3),
    ("tiers 1+3: first attempts reset, inbox unwritable", {"webhook": "first_attempts", "inbox": True}, 2),
    ("tiers 2+3: acknowledgment failing, inbox unwritable", {"ack": True, "inbox": True}, 1),
    ("black hole, acknowledgment failing", {"webhook": "blackhole", "ack": True}, 3),
    ("watcher stopped (serve frozen), acknowledgment failing", {"freeze": True, "ack": True}, 3),
)


async def matrix(ctx: Context) -> None:
    """Each row's faults for a stretch of the run, cleared, then wait for tier 1 to carry traffic again."""
    rows = len(MATRIX)
    for n, (label, faults, carrier) in enumerate(MATRIX):
        await ctx.at(0.04 + 0.92 * n / rows)
        if "webhook" in faults:
            await webhook(ctx, faults["webhook"])
        if faults.get("inbox"):
            break_inbox(ctx)
        if faults.get("freeze"):
            for rig in ctx.rigs:
                rig.freeze()
        ctx.ack.failing = bool(faults.get("ack"))
        ctx.log(label, "apply")
        applied = time.perf_counter()
        await ctx.at(0.04 + 0.92 * (n + 0.6) / rows)
        ctx.expect(label, carrier, applied + 0.05, time.perf_counter())
        ctx.ack.failing = False
        for rig in ctx.rigs:
            rig.thaw()
        if faults.get("inbox"):
            heal_inbox(ctx)
        await webhook_ok(ctx)
        ctx.log(label, "clear")
        await ctx.back_on_tier1(label)


# --- process faults --------------------------------------------------------------------------------


async def serve_kill(ctx: Context) -> None:
    """SIGKILL a session's serve several times (alternating sessions), down for a moment, restarted."""
    kills = 6
    for n in range(kills):
        await ctx.at((n + 0.5) / (kills + 2))  # a restart takes a second or two: room for the last return
        rig = ctx.rigs[n % len(ctx.rigs)]
        down = ctx.random.uniform(0.0, 0.5)
        ctx.log("serve SIGKILL", "apply", session=rig.session, down_s=round(down, 3))
        await rig.kill_and_restart(down)
        ctx.log("serve SIGKILL", "clear", session=rig.session)
        await ctx.back_on_tier1("serve SIGKILL")


async def sender_kill(ctx: Context) -> None:
    """SIGKILL the sender process several times, and some ``mcp-cascade send`` processes mid-flight."""
    sender = ctx.sender
    assert isinstance(sender, WorkerSender)
    kills = 6
    for n in range(kills):
        await ctx.at((n + 0.5) / (kills + 1))
        if n % 2 == 0:  # the other one-shots run to the end
            sender.kill_next_oneshot_after = ctx.random.uniform(0.3, 1.0)  # start-up takes ~0.7 s here
            ctx.log("mcp-cascade send SIGKILL", "apply", after_s=round(sender.kill_next_oneshot_after, 3))
        down = ctx.random.uniform(0.0, 0.3)
        ctx.log("sender SIGKILL", "apply", down_s=round(down, 3))
        await sender.kill_and_restart(down)
        ctx.log("sender SIGKILL", "clear")
    ctx.notes.append(
        "The sender is a long-lived process embedding Sender (as a bridge does); every 40th response "
        "goes through its own `mcp-cascade send` process instead, one of which is killed after every "
        "other sender kill."
    )


async def serve_freeze(ctx: Context) -> None:
    """SIGSTOP a session's serve for longer than the overall timeout, then SIGCONT."""
    freezes = 4
    hold = float(ctx.config["overall_timeout_ms"]) / 1000 + 1.0
    for n in range(freezes):
        await ctx.at((n + 0.2) / (freezes + 1))
        rig = ctx.rigs[n % len(ctx.rigs)]
        rig.freeze()
        ctx.log("serve SIGSTOP", "apply", session=rig.session, hold_s=hold)
        await anyio.sleep(hold)
        rig.thaw()
        ctx.log("serve SIGSTOP", "clear", session=rig.session)
        await ctx.back_on_tier1("serve SIGSTOP")


# --- network faults --------------------------------------------------------------------------------

NETWORK = (
    ("reset", "connection reset before the request reaches the sidecar"),
    ("reset_after", "request delivered, connection reset instead of the answer"),
    ("latency", "request held 300 ms (over the 100 ms webhook timeout)"),
    ("blackhole", "connection accepted, request never forwarded, never answered"),
    ("half_close", "request delivered, answer direction closed (FIN) without an answer"),
    ("trickle", "answer dribbled back one byte every 20 ms"),
)


async def network(ctx: Context) -> None:
    """Each proxy fault alone for a stretch, then all of them drawn at random per exchange."""
    phases = len(NETWORK) + 1
    for n, (kind, what) in enumerate(NETWORK):
        await ctx.at(0.03 + 0.85 * n / phases)
        await webhook(ctx, kind)
        ctx.log(kind, "apply", what=what)
        await ctx.at(0.03 + 0.85 * (n + 0.6) / phases)
        await webhook_ok(ctx)
        ctx.log(kind, "clear")
        await ctx.back_on_tier1(kind)
    await ctx.at(0.03 + 0.85 * (phases - 1) / phases)
    weights = {Fault(kind): 1.0 for kind, _ in NETWORK} | {Fault.PASS: 2.0}
    for rig in ctx.rigs:
        rig.proxy.mix(weights, seed=ctx.random.randrange(1 << 30), latency_s=0.3, trickle_interval_s=0.02)
    ctx.log("mix", "apply", what="each exchange draws pass (2/8) or one of the six faults (1/8 each)")
    await ctx.at(0.88)
    await webhook_ok(ctx)
    ctx.log("mix", "clear")
    await ctx.back_on_tier1("mix")
    for kind, _ in NETWORK:
        met = sum(rig.proxy.counts[Fault(kind)] for rig in ctx.rigs)
        ctx.checks[f"{kind} met by at least 3 exchanges"] = met >= 3


# --- disk faults -----------------------------------------------------------------------------------


async def disk_prepare(ctx: Context) -> None:
    """Put the sessions' directory on its own breakable filesystem before serve starts."""
    disk = SessionDisk(ctx.workdir, ctx.home / "sessions", ctx.sessions)
    await disk.mount()
    ctx.disk = disk
    ctx.notes.append(
        "$HOME/sessions (every store) and each inbox are ext4 images on loop devices over small tmpfs, "
        "in a private mount namespace; the sender's outbox and the audit trail stay on the root disk. "
        "fsync errors are given to the inboxes only (under SQLite they corrupt the database file)."
    )


async def disk(ctx: Context) -> None:
    """A read-only inbox, a full filesystem, inbox fsync errors: each alone, then with the webhook down."""
    disk = ctx.disk
    assert disk is not None
    try:
        for n in range(2):

            def at(step: float, n: int = n) -> float:  # two rounds of eight steps, three left for the return
                return (n * 8 + step) / 19

            await ctx.at(at(0.3))
            for rig in ctx.rigs:
                await disk.read_only_inbox(rig.paths.inbox)
            ctx.log("inbox read-only", "apply", what="read-only bind mount over the inbox")
            applied = time.perf_counter()
            await ctx.at(at(1.3))
            ctx.expect("inbox read-only (webhook fine)", 1, applied + 0.05, time.perf_counter())
            await webhook(ctx, "blackhole")
            ctx.log("inbox read-only + webhook black-holed", "apply", what="no path durable at the server")
            await ctx.at(at(3.0))
            await webhook_ok(ctx)
            await disk.writable_inboxes()
            ctx.log("inbox read-only", "clear")
            ctx.log("inbox read-only + webhook black-holed", "clear")
            await ctx.back_on_tier1("inbox read-only")

            await ctx.at(at(3.4))
            taken = await anyio.to_thread.run_sync(disk.fill)
            ctx.log(
                "filesystem full", "apply", what=f"filler took {taken >> 20} MiB; writes fail with ENOSPC"
            )
            await ctx.at(at(4.4))
            await webhook(ctx, "blackhole")
            ctx.log("filesystem full + webhook black-holed", "apply", what="only the inbox, on the full disk")
            await ctx.at(at(5.7))
            await webhook_ok(ctx)
            disk.unfill()
            ctx.log("filesystem full", "clear")
            ctx.log("filesystem full + webhook black-holed", "clear")
            await ctx.back_on_tier1("filesystem full")

            await ctx.at(at(6.0))
            await disk.break_fsync()
            ctx.log("inbox fsync errors", "apply", what="inbox images cannot grow: write-back fails")
            await ctx.at(at(6.5))
            await webhook(ctx, "blackhole")
            ctx.log("inbox fsync errors + webhook black-holed", "apply", what="only the failing inbox")
            await ctx.at(at(7.7))
            await webhook_ok(ctx)
            await disk.heal_fsync()
            ctx.log("inbox fsync errors", "clear")
            ctx.log("inbox fsync errors + webhook black-holed", "clear")
            await ctx.back_on_tier1("inbox fsync errors")
    finally:
        await webhook_ok(ctx)
        await disk.writable_inboxes()
        disk.unfill()
        await disk.heal_fsync()


# --- reconfiguration under load --------------------------------------------------------------------

RECONFIG: tuple[tuple[str, Mapping[str, Any], int | None], ...] = (
    ("defaults", {}, 1),
    ("inbox first", {"tier_order": ["file", "webhook", "bridge"]}, 3),
    ("webhook timeout 50 ms, overall 4 s", {"webhook_timeout_ms": 50, "overall_timeout_ms": 4000}, 1),
    ("bridge then inbox", {"tier_order": ["bridge", "file"], "bridge_timeout_ms": 300}, 2),
    # tier_order must not be empty and may name only the three tiers: this one is refused.
    ("a bad file (rejected, the previous one stays)", {"tier_order": ["nowhere"]}, None),
    (
        "webhook only then inbox, timeout 200 ms",
        {"tier_order": ["webhook", "file"], "webhook_timeout_ms": 200},
        1,
    ),
    ("inbox only", {"tier_order": ["file"]}, 3),
    ("back to the defaults", {}, 1),
)


async def reconfig(ctx: Context) -> None:
    """Rewrite config.toml several times during the run, under a light network fault mix."""
    for rig in ctx.rigs:
        rig.proxy.mix(
            {Fault.PASS: 20.0, Fault.LATENCY: 1.0}, seed=ctx.random.randrange(1 << 30), latency_s=0.15
        )
    ctx.notes.append("1 exchange in 21 is held 150 ms, so timeout changes change which tier answers.")
    phases = len(RECONFIG)
    rounds = 2
    previous: int | None = None
    for r in range(rounds):
        for n, (label, values, carrier) in enumerate(RECONFIG):
            await ctx.at((r * phases + n + 0.05) / (rounds * phases))
            ctx.reconfigure(**values)
            ctx.log("config.toml rewritten", "apply", to=label)
            expected = carrier if carrier is not None else previous
            since = time.perf_counter() + 0.3  # the file watch reloads within milliseconds; keep a margin
            await ctx.at((r * phases + n + 1) / (rounds * phases))
            if expected is not None:
                ctx.expect(f"config: {label}", expected, since, time.perf_counter(), share=0.9, first=True)
            previous = expected
    for rig in ctx.rigs:
        rig.proxy.set(Fault.PASS)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "matrix",
        "failover matrix: each tier disabled alone and in combinations",
        matrix,
        config=_BREAKER,
        min_faults=1,  # eleven rows, each a few seconds of traffic
        min_duration_s=22.0,
    ),
    Scenario(
        "serve-kill",
        "serve killed with SIGKILL and restarted",
        serve_kill,
        config=_BREAKER,
        min_duration_s=12.0,
    ),
    Scenario(
        "sender-kill",
        "sender processes killed with SIGKILL and restarted",
        sender_kill,
        sender="worker",
        config=_BREAKER,
        min_duration_s=10.0,
    ),
    Scenario(
        "serve-freeze",
        "serve frozen (SIGSTOP) past the overall timeout, then resumed",
        serve_freeze,
        config={**_BREAKER, "overall_timeout_ms": 1500},
        min_duration_s=16.0,
    ),
    Scenario(
        "network",
        "network faults through the fault-injecting proxy",
        network,
        config=_BREAKER,
        min_faults=1,  # each kind alone once, then all of them again in the random mix
        min_duration_s=14.0,
    ),
    Scenario(
        "disk",
        "disk faults: read-only inbox, full filesystem, fsync errors",
        disk,
        # While no path can make a response durable at the server, give up on it (into the outbox)
        # quickly rather than after the default 10 s.
        config={**_BREAKER, "overall_timeout_ms": 1500},
        needs_mounts=True,
        prepare=disk_prepare,
        min_duration_s=16.0,
    ),
    Scenario(
        "reconfig",
        "tier order and timeouts changed by rewriting config.toml under load",
        reconfig,
        config={"breaker_reset_ms": 200, "breaker_max_reset_ms": 800},
        late_after_ms=4000.0,
        min_duration_s=12.0,
    ),
    Scenario(
        "poison",
        "poisons on every tier (surrogates, NaN, server-owned meta, huge ids, bad files and folders)",
        poison,
        config=_BREAKER,
        min_faults=1,  # two phases; the poisons themselves are counted apart
        min_duration_s=4.0,
    ),
)


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name``."""
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(name)
