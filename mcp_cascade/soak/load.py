"""Open-loop load through the real sender into a real serve: constant rate per tier, then steps to saturation.

Responses are *scheduled* at a fixed rate and each is started at its time
whatever happened to the previous ones (no coordinated omission): latency runs
from the scheduled time to the moment the MCP client side receives the
notification, so a stalled server shows up as latency, not as a lower rate.

Modes: tier 1 forced (``tier="webhook"``), tier 2 (the cascade, with every
first attempt reset by the proxy so the bridge's redelivery carries it),
tier 3 forced (``tier="file"``) and the cascade choosing (``tier="auto"``).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from mcp_cascade.response import make_response
from mcp_cascade.soak.rig import Rig, SoakAck, write_config
from mcp_cascade.soak.senders import InProcessSender
from mcp_cascade.soak.tally import BUDGET_MS, StreamTally, percentiles
from mcp_cascade.testing.faults import Fault
from mcp_cascade.wire import TierChoice

# (name, forced tier, whether every first attempt is reset so tier 2 carries it)
MODES: tuple[tuple[str, TierChoice, bool], ...] = (
    ("tier 1 (webhook forced)", "webhook", False),
    ("tier 2 (first attempt fails)", "auto", True),
    ("tier 3 (file forced)", "file", False),
    ("cascade (auto)", "auto", False),
)
STEPS = (100, 200, 400, 800, 1600, 3200)
_CONFIG = {"log_level": "warning", "audit_max_bytes": 1 << 40}
_DRAIN_S = 30.0


def loopback_floor(samples: int = 2000) -> dict[str, Any]:
    """A bare TCP round trip on loopback in this process: the floor under any tier-1 figure."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times: list[float] = []
    try:
        for _ in range(samples):
            start = time.perf_counter()
            client.sendall(b"x")
            peer.recv(1)
            peer.sendall(b"y")
            client.recv(1)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        for sock in (client, peer, server):
            sock.close()
    return percentiles(times)


async def _open_loop(
    rig: Rig, sender: InProcessSender, tally: StreamTally, label: str, rate: float, duration_s: float
) -> float:
    """Start one delivery every 1/rate s for ``duration_s``; returns when the last has its receipt."""
    total = max(1, int(rate * duration_s))
    start = time.perf_counter() + 0.05

    async def one(index: int, due: float) -> None:
        response = make_response(
            type="message",
            user_id=4242,
            text=f"load {label} #{index}",
            id=f"load:{label}:{index:07d}",
            session=rig.session,
        )
        tally.schedule(response, rig.session, index, due)
        receipt = await sender.deliver(response, rig.session)
        if receipt is not None:
            tally.receipt(response.id, receipt)

    async with anyio.create_task_group() as tg:
        for index in range(total):
            due = start + index / rate
            await anyio.sleep(max(0.0, due - time.perf_counter()))
            tg.start_soon(one, index, due)
    return start


async def _drain(rig: Rig, tally: StreamTally) -> None:
    wanted = set(tally.sent)
    with anyio.move_on_after(_DRAIN_S):
        await rig.serve.wait_for(
            lambda: wanted <= {n["params"]["meta"]["response_id"] for n in rig.serve.channel()}, _DRAIN_S
        )


def _collect(rig: Rig, tally: StreamTally, mark: int) -> None:
    tally.record_pushes(rig.session, rig.serve.notifications[mark:])


async def _mode(
    rig: Rig,
    sender: InProcessSender,
    name: str,
    tier: TierChoice,
    reset_first: bool,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    # Only the tier-2 mode goes through the proxy (which resets first attempts); the others go direct.
    # Its first attempts all fail: concurrent deliveries would add up to the breaker's threshold and
    # send everything to tier 3, so the breaker is set out of reach for that mode; and the inbox is
    # left out of its order, else a refused tier 1 goes to the inbox at once and, on a busy machine,
    # the inbox answers before tier 2 does.
    rig.proxy.set(Fault.RESET, unless=b"x-cascade-tier: 2")
    rig.route(through_proxy=reset_first)
    tier2_only = {"breaker_threshold": 1000, "tier_order": ["webhook", "bridge"]}
    write_config(rig.home, {**_CONFIG, **tier2_only} if reset_first else _CONFIG)
    sender.live.reload()
    sender.tier = tier
    tally, mark = StreamTally(), len(rig.serve.notifications)
    label = name.split(" (")[0].replace(" ", "")
    await _open_loop(rig, sender, tally, label, rate, seconds)
    await _drain(rig, tally)
    _collect(rig, tally, mark)
    verdict = tally.verdict(from_scheduled=True)
    return {
        "mode": name,
        "rate": rate,
        "sent": verdict["sent"],
        "lost": verdict["lost"],
        "duplicated": verdict["duplicated"],
        "carried_by": verdict["carried_by"],
        "latency_ms": verdict["latency_ms"],
        "budget_ms": {f"tier{t}": b for t, b in BUDGET_MS.items()},
    }


async def _step(rig: Rig, sender: InProcessSender, rate: int, seconds: float) -> dict[str, Any]:
    rig.route(through_proxy=False)
    sender.tier = "auto"
    tally, mark = StreamTally(), len(rig.serve.notifications)
    start = await _open_loop(rig, sender, tally, f"step{rate}", rate, seconds)
    await _drain(rig, tally)
    _collect(rig, tally, mark)
    verdict = tally.verdict(from_scheduled=True)
    arrivals = sorted(p.at for p in tally.arrivals)
    span = (arrivals[-1] - start) if arrivals else seconds
    achieved = len(set(p.response_id for p in tally.arrivals)) / max(span, 1e-9)
    all_ms = sorted(
        (p.at - tally.sent[p.response_id].scheduled) * 1000
        for p in tally.arrivals
        if p.response_id in tally.sent
    )
    stats = percentiles(all_ms)
    return {
        "offered": rate,
        "achieved": round(achieved, 1),
        "p50": stats["p50"] or 0.0,
        "p99": stats["p99"] or 0.0,
        "lost": verdict["lost"],
        "carried_by": verdict["carried_by"],
        "within_budget": (stats["p99"] or 0.0) <= BUDGET_MS[1],
        "saturated": achieved < 0.9 * rate or verdict["lost"] > 0,
    }


async def run_load(
    *,
    duration_s: float = 60.0,
    rate: float = 100.0,
    step_s: float = 5.0,
    offered_rates: Sequence[int] = STEPS,
    seed: int = 1,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """The constant-rate modes at ``rate`` for ``duration_s`` each, then the step test; JSON-ready."""
    root = Path(tempfile.mkdtemp(prefix="mcp-cascade-load-")) if workdir is None else workdir
    home, logs = root / "load" / "home", root / "load" / "logs"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs.mkdir(parents=True, exist_ok=True)
    # Quiet logs (a line per response would cost more than the delivery); no audit rotation.
    write_config(home, _CONFIG)
    floor = loopback_floor()
    try:
        async with (
            Rig(home, "load-0", logs, seed=seed) as rig,
            InProcessSender(home, logs, SoakAck()) as sender,
        ):
            constant = [await _mode(rig, sender, *mode, rate, duration_s) for mode in MODES]
            steps: list[dict[str, Any]] = []
            for offered in offered_rates:
                steps.append(await _step(rig, sender, offered, step_s))
                if steps[-1]["saturated"]:
                    break
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    kept_up = [s for s in steps if not s["saturated"]]
    in_budget = [s for s in kept_up if s["within_budget"]]
    return {
        "rate": rate,
        "duration_s": duration_s,
        "step_s": step_s,
        "loopback_floor_ms": floor,
        "constant": constant,
        "steps": steps,
        "within_budget_up_to": in_budget[-1]["offered"] if in_budget else None,
        "saturation": (
            f"kept up with {kept_up[-1]['offered']} req/s ({kept_up[-1]['achieved']:.0f} achieved), "
            f"p99 within the tier-1 budget up to {in_budget[-1]['offered'] if in_budget else '-'} req/s; "
            + (
                f"fell behind at {steps[-1]['offered']} req/s ({steps[-1]['achieved']:.0f} achieved)"
                if steps[-1]["saturated"]
                else f"not saturated at {steps[-1]['offered']} req/s"
            )
            if kept_up
            else f"fell behind at {steps[0]['offered']} req/s"
        ),
        "lost": sum(m["lost"] for m in constant) + sum(s["lost"] for s in steps),
        "duplicated": sum(m["duplicated"] for m in constant),
    }
