"""Everything the demo has seen so far, fed by followers of the real processes' own outputs.

- what each session received: the frames a :class:`ServeProcess` read on serve's
  stdout (channel notifications carry the tier in their ``meta``);
- failovers, the bridge's receipts and which tier pushed a permission
  verdict: the audit trail (``$HOME/audit.jsonl``, written by the bridge and
  by each serve);
- breaker transitions: the bridge's JSON log lines (``event: breaker``), which
  name the response whose attempt moved the breaker;
- breaker states now: the bridge's ``GET /health/bridge``.

Followers only read; the scenario waits on :meth:`Board.wait_for`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx

from mcp_cascade.demo.tally import DemoTally
from mcp_cascade.testing import ServeProcess
from mcp_cascade.testing.tally import Arrival
from mcp_cascade.wire import CHANNEL, PERMISSION

_POLL_S = 0.02
_HEALTH_S = 0.1


@dataclass(frozen=True, slots=True)
class Failover:
    """The bridge moved a response from one tier to the next."""

    at: float
    session: str
    response_id: str
    from_tier: int
    to_tier: int
    reason: str
    detail: str

    def to_dict(self, origin: float) -> dict[str, Any]:
        """JSON form; ``at_s`` is seconds since ``origin``."""
        return {
            "at_s": round(self.at - origin, 3),
            "session": self.session,
            "response_id": self.response_id,
            "from_tier": self.from_tier,
            "to_tier": self.to_tier,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """A session's breaker changed state."""

    at: float
    session: str
    state: str
    reason: str
    response_id: str | None

    def to_dict(self, origin: float) -> dict[str, Any]:
        """JSON form; ``at_s`` is seconds since ``origin``."""
        return {
            "at_s": round(self.at - origin, 3),
            "session": self.session,
            "state": self.state,
            "reason": self.reason,
            "response_id": self.response_id,
        }


@dataclass(frozen=True, slots=True)
class Note:
    """One line of the live event log."""

    kind: Literal["step", "arrival", "failover", "breaker", "info"]
    at: float
    text: str
    session: str = ""
    tier: int | None = None


@dataclass
class Board:
    """The shared record, and a way to wait for it to change."""

    origin: float = field(default_factory=time.perf_counter)
    wall_origin: float = field(default_factory=time.time)
    tally: DemoTally = field(default_factory=DemoTally)
    failovers: list[Failover] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)  # the last /health/bridge answer
    pushed: dict[str, int] = field(default_factory=dict)  # response id → tier, from serve's audit records
    permissions: dict[str, str] = field(default_factory=dict)  # request id → the tap's response id
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)  # the bridge's "sent" records
    step: str = ""
    on_note: Callable[[Note], None] = lambda note: None
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def note(
        self, kind: Any, text: str, session: str = "", tier: int | None = None, at: float | None = None
    ) -> None:
        """Add a line to the event log (``at`` on the perf_counter clock, default now)."""
        self.on_note(Note(kind, time.perf_counter() if at is None else at, text, session, tier))

    def at_wall(self, record: dict[str, Any]) -> float:
        """A log or audit record's own time (its ``ts``) on the demo's clock; now when it has none."""
        ts = record.get("ts")
        try:
            wall = float(ts) if isinstance(ts, int | float) else datetime.fromisoformat(str(ts)).timestamp()
        except ValueError:
            return time.perf_counter()
        return self.origin + (wall - self.wall_origin)

    def poke(self) -> None:
        """Wake every waiter."""
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds; TimeoutError naming ``what`` after ``timeout`` seconds."""
        try:
            with anyio.fail_after(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError as exc:
            raise TimeoutError(f"waited {timeout:g} s for {what}") from exc

    def breaker_state(self, session: str) -> str:
        """The session's breaker state in the bridge's last health answer."""
        return str(self.breakers.get(session, {}).get("state", "closed"))


async def follow_session(serve: ServeProcess, board: Board) -> None:
    """Record every channel notification and permission verdict the session receives."""

    def beyond(count: int) -> Callable[[], bool]:
        return lambda: len(serve.notifications) > count

    index = 0
    while True:
        await serve.wait_for(beyond(index), timeout=math.inf)
        fresh, index = serve.notifications[index:], len(serve.notifications)
        for frame in fresh:
            method, params, at = frame.get("method"), frame.get("params") or {}, frame["_received"]
            if method == CHANNEL:
                meta = params.get("meta", {})
                arrival = Arrival(
                    meta.get("response_id", ""),
                    serve.session,
                    int(meta["tier"]) if str(meta.get("tier", "")).isdigit() else None,
                    at,
                    meta.get("redelivered") == "true",
                )
                what = f"{meta.get('type', '?')} {_quote(params.get('content', ''))}"
            elif method == PERMISSION:
                response_id = board.permissions.get(params.get("request_id", ""), "")
                arrival = Arrival(response_id, serve.session, await _pushed_tier(board, response_id), at)
                what = f"permission {params.get('behavior')} for {params.get('request_id')}"
            else:
                continue
            board.tally.arrive(arrival)
            board.poke()
            if board.tally.first(arrival.response_id) is arrival or arrival.redelivered:
                sent = board.tally.sent.get(arrival.response_id)
                took = f"  {(at - sent.at) * 1000:7.1f} ms" if sent and not sent.held else ""
                flag = "  (redelivered after a kill)" if arrival.redelivered else ""
                if not arrival.response_id.startswith("demo:flood:"):
                    board.note("arrival", f"← {what}{took}{flag}", serve.session, arrival.tier)
            else:
                board.note("info", f"REPEATED {arrival.response_id}", serve.session, arrival.tier)


async def _pushed_tier(board: Board, response_id: str) -> int | None:
    # A permission frame carries no meta; serve's audit record of the push says which tier it was.
    with contextlib.suppress(TimeoutError):
        await board.wait_for(lambda: response_id in board.pushed, 3.0, "the push's audit record")
    return board.pushed.get(response_id)


async def follow_jsonl(path: Path, handle: Callable[[dict[str, Any]], None]) -> None:
    """Hand each complete JSON line appended to ``path`` (by any process) to ``handle``."""
    offset, rest = 0, b""
    while True:
        chunk = await anyio.to_thread.run_sync(_read_from, path, offset)
        offset += len(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a library's plain-text line on stderr
            if isinstance(record, dict):
                handle(record)
        await anyio.sleep(_POLL_S)  # other processes append: poll, as `tail -f` does


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read()
    except FileNotFoundError:
        return b""


def audit_handler(board: Board) -> Callable[[dict[str, Any]], None]:
    """Failovers (from the bridge's records) and each push's tier (from serve's)."""

    def handle(record: dict[str, Any]) -> None:
        if record.get("event") == "failover" and record.get("component") == "bridge":
            failover = Failover(
                board.at_wall(record),
                str(record.get("session")),
                str(record.get("response_id")),
                int(record.get("from_tier", 0)),
                int(record.get("to_tier", 0)),
                str(record.get("kind", "error")),
                str(record.get("reason") or ""),
            )
            board.failovers.append(failover)
            detail = f" — {_clip(failover.detail.split(';')[0], 60)}" if failover.detail else ""
            board.note(
                "failover",
                f"failover {failover.from_tier} → {failover.to_tier}: {failover.reason}{detail}",
                failover.session,
                at=failover.at,
            )
            board.poke()
        elif record.get("event") == "sent" and record.get("component") == "bridge":
            board.receipts[str(record.get("response_id"))] = record
            board.poke()
        elif record.get("event") == "pushed" and isinstance(record.get("tier"), int):
            board.pushed[str(record.get("response_id"))] = int(record["tier"])
            board.poke()

    return handle


def bridge_log_handler(board: Board) -> Callable[[dict[str, Any]], None]:
    """Breaker transitions, from the bridge's JSON log lines."""

    def handle(record: dict[str, Any]) -> None:
        if record.get("event") != "breaker":
            return
        transition = Transition(
            board.at_wall(record),
            str(record.get("session")),
            str(record.get("state")),
            str(record.get("reason") or ""),
            record.get("response_id"),
        )
        board.transitions.append(transition)
        why = f" ({transition.reason})" if transition.reason else ""
        board.note("breaker", f"breaker → {transition.state}{why}", transition.session, at=transition.at)
        board.poke()

    return handle


async def poll_health(api_url: str, board: Board) -> None:
    """Keep ``board.breakers`` equal to the bridge's ``/health/bridge`` breakers."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            try:
                answer = (await http.get(api_url + "/health/bridge")).json()
            except (httpx.HTTPError, ValueError):
                answer = None
            if isinstance(answer, dict) and answer.get("breakers") != board.breakers:
                board.breakers = dict(answer.get("breakers") or {})
                board.poke()
            await anyio.sleep(_HEALTH_S)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _quote(text: str, width: int = 40) -> str:
    return json.dumps(_clip(text, width), ensure_ascii=False)
