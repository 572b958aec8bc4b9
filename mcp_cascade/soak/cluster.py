"""The ``cluster`` soak scenario: two homes through a three-node JetStream cluster whose nodes get killed.

Home A serves session ``soak-a`` and home B serves ``soak-b`` (real ``serve``
processes); a sender in each home streams answers to the *other* home's session
through tier 4, one after another, while the cluster's nodes are SIGKILLed in
turn (one down at a time, restarted on the same store) with the stream kept in
three copies. What each session receives is counted on its MCP client side
(lost, duplicated, out of order, and the latency from hand-over to push) by the
tally every scenario uses, and every acknowledged response's audit trail is
checked across both homes: the sender's attempts in its own home, ``durable``
before ``pushed`` in the receiving one.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from mcp_cascade.remote.route import RemoteRoute
from mcp_cascade.remote.servers import NatsCluster
from mcp_cascade.response import make_response
from mcp_cascade.signing import load_or_create_secret
from mcp_cascade.soak.audit import check_audit
from mcp_cascade.soak.rig import SoakAck, write_config
from mcp_cascade.soak.senders import InProcessSender
from mcp_cascade.soak.tally import StreamTally
from mcp_cascade.testing import ServeProcess

__all__ = ["NAME", "TITLE", "run_cluster"]

NAME = "cluster"
TITLE = "two homes through a three-node JetStream cluster (R3), nodes SIGKILLed in turn"
_KILLS = (0.2, 0.45, 0.7)
# Both homes' config.toml: the stream in three copies, quiet logs, no audit rotation (the check reads it all).
_CONFIG: dict[str, Any] = {"nats_replicas": 3, "log_level": "warning", "audit_max_bytes": 1 << 40}
_MUST_BE_ZERO = ("lost", "acked_not_delivered", "duplicated", "out_of_order", "unknown", "wrong_session")


async def run_cluster(count: int, seed: int, root: Path, tick: Callable[[], None]) -> dict[str, Any]:
    """Send ``count`` answers (half each way), killing a node at each of ``_KILLS``; soak's result shape."""
    work = root / NAME
    shutil.rmtree(work, ignore_errors=True)
    homes = {"a": work / "home-a", "b": work / "home-b"}
    for home in homes.values():
        home.mkdir(parents=True, mode=0o700)
    load_or_create_secret(homes["a"])
    shutil.copy2(homes["a"] / "secret", homes["b"] / "secret")
    chooser = random.Random(seed)
    faults: list[dict[str, Any]] = []
    tally = StreamTally()
    with NatsCluster(work / "nats", 3) as cluster:
        for home in homes.values():
            write_config(home, {**_CONFIG, "nats_url": cluster.url})
        serves = {
            side: ServeProcess(home, f"soak-{side}", stderr_path=work / f"serve-{side}.stderr")
            for side, home in homes.items()
        }
        async with serves["a"], serves["b"]:
            for serve in serves.values():
                await serve.wait_session()
                await serve.initialize()
            ack = SoakAck()
            senders = [InProcessSender(home, home, ack) for home in homes.values()]
            async with senders[0] as from_a, senders[1] as from_b:
                for sender, target in ((from_a, "soak-b"), (from_b, "soak-a")):
                    remote = sender.sender.remote
                    assert remote is not None
                    # Until the registry has been read with the session in it: "remote" alone can also
                    # mean "NATS not reached yet, the session unknown here", and a stream begun then
                    # would test the start-up, not the cluster.
                    with anyio.fail_after(60):
                        while not await _registered(remote, target):  # noqa: ASYNC110
                            await anyio.sleep(0.05)
                gates = _KillGates(len(_KILLS), streams=2)

                async def stream(sender: InProcessSender, target: str, n: int) -> None:
                    due = [int(fraction * n) for fraction in _KILLS]
                    for k in (k for k, at in enumerate(due) if at >= n):
                        gates.arrive(k)  # a stream too short to reach this fraction does not hold it up
                    for i in range(n):
                        for k in (k for k, at in enumerate(due) if at == i):
                            await gates.reached(k)  # paused until kill k has begun
                        response = make_response(
                            type="message", user_id=1, text=f"answer {i}", id=f"soak:{target}:{i:06d}"
                        )
                        tally.schedule(response, target, i, time.perf_counter())
                        with anyio.fail_after(120):
                            while True:
                                receipt = await sender.deliver(response, target)
                                assert receipt is not None
                                tally.receipt(response.id, receipt)
                                if receipt["status"] != "failed":
                                    break
                                await anyio.sleep(0.2)
                        tick()

                async def killer() -> None:
                    for k in range(len(_KILLS)):
                        await gates.all_reached(k)
                        node = cluster.nodes[(k + chooser.randrange(3)) % 3]
                        started = time.monotonic()
                        await anyio.to_thread.run_sync(node.kill)
                        gates.killed(k)
                        await anyio.sleep(chooser.uniform(0.5, 1.5))
                        await anyio.to_thread.run_sync(node.start)
                        await anyio.to_thread.run_sync(node.wait_ready)
                        faults.append({"node": node.name, "down_s": round(time.monotonic() - started, 3)})

                # The kills are tied to the streams' progress, not to the clock: each stream pauses at
                # each kill's fraction until that kill has begun, and the counting waits for the killer.
                async with anyio.create_task_group() as streams:
                    streams.start_soon(killer)
                    streams.start_soon(stream, from_a, "soak-b", count // 2)
                    streams.start_soon(stream, from_b, "soak-a", count - count // 2)
                with anyio.move_on_after(60):
                    while sum(len(s.channel()) for s in serves.values()) < count:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                await anyio.sleep(1.0)  # room for a wrongly repeated push to show
        # serve has exited cleanly here: everything it pushed is on record, in the audit trail too
        for side, serve in serves.items():
            tally.record_pushes(f"soak-{side}", serve.notifications)
    return _result(tally, count, faults, check_audit(list(homes.values()), tally))


async def _registered(remote: RemoteRoute, session: str) -> bool:
    """The sender places ``session`` on another host from a registry entry it has read."""
    place, _ = await remote.place(session)
    return place == "remote" and any(r.session_id == session for r in remote.registrations())


class _KillGates:
    """Where the streams and the killer meet: kill ``k`` waits for every stream to arrive at its
    fraction ``k``, and a stream arriving there waits until kill ``k`` has begun (never longer: the
    node goes down while the stream runs on)."""

    def __init__(self, kills: int, *, streams: int) -> None:
        self._streams = streams
        self._arrived = [0] * kills
        self._all_arrived = [anyio.Event() for _ in range(kills)]
        self._killed = [anyio.Event() for _ in range(kills)]

    def arrive(self, k: int) -> None:
        """A stream stands at kill ``k``'s fraction (or will never reach it: it is too short)."""
        self._arrived[k] += 1
        if self._arrived[k] == self._streams:
            self._all_arrived[k].set()

    async def reached(self, k: int) -> None:
        """A stream arrived at kill ``k``'s fraction: count it, then wait for the kill to begin."""
        self.arrive(k)
        await self._killed[k].wait()

    async def all_reached(self, k: int) -> None:
        """Wait until every stream stands at kill ``k``'s fraction."""
        await self._all_arrived[k].wait()

    def killed(self, k: int) -> None:
        """Kill ``k`` has begun: the streams waiting at its fraction go on."""
        self._killed[k].set()


def _result(
    tally: StreamTally, count: int, faults: list[dict[str, Any]], audit: dict[str, Any]
) -> dict[str, Any]:
    verdict = tally.verdict()
    failures = [f"{k}: {verdict[k]}" for k in _MUST_BE_ZERO if verdict[k]]
    if len(faults) < len(_KILLS):
        failures.append(f"only {len(faults)} of {len(_KILLS)} node kills happened")
    if audit["incomplete"]:
        failures.append(f"audit incomplete for {audit['incomplete']} responses, e.g. {audit['examples']}")
    return {
        "scenario": NAME,
        "title": TITLE,
        "verdict": verdict,
        "audit": audit,
        "faults_applied": {"node SIGKILL": len(faults)},
        "faults": faults,
        "failures": failures,
        "passed": not failures and verdict["sent"] == count,
        "latencies_ms": tally.latencies(),
    }
