"""The scenario: a person answers two sessions, then things break one at a time.

Every component is the real one: the bridge is ``mcp-cascade bridge`` in a
subprocess talking HTTP to a fake Telegram Bot API (:class:`FakeTelegram`, the
only stand-in, because the real one needs an account); each session is
``mcp-cascade serve`` in a subprocess, driven over stdio by
:class:`ServeProcess` as Claude Code would. Faults are real too: the
``backend`` session's sidecar is reached through a :class:`FaultProxy` (a
network path that can reset or swallow requests), ``frontend``'s server is
killed with SIGKILL and started again, and a few hundred files are dropped
into an inbox at once.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mcp_cascade.demo.board import (
    Board,
    audit_handler,
    bridge_log_handler,
    follow_jsonl,
    follow_session,
    poll_health,
)
from mcp_cascade.demo.tally import DemoSent
from mcp_cascade.inbox import enqueue
from mcp_cascade.response import make_response
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.testing import BridgeProcess, ServeProcess, point_webhook_at, sidecar_address
from mcp_cascade.testing.fake_api import BotMessage, FakeTelegram, FakeUser
from mcp_cascade.testing.faults import Fault, FaultProxy
from mcp_cascade.wire import PERMISSION_REQUEST, WEBHOOK_PATH

PERSON = FakeUser(42, "Alex", "alex")
FRONTEND, BACKEND = "frontend", "backend"
FLOOD = 300
_WAIT_S = 15.0  # one step's wait; the whole run has its own deadline


@dataclass(frozen=True, slots=True)
class Step:
    """One scenario step and when it ran (seconds since the start)."""

    name: str
    title: str
    started_s: float
    duration_s: float
    completed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "title": self.title,
            "started_s": round(self.started_s, 3),
            "duration_s": round(self.duration_s, 3),
            "completed": self.completed,
        }


class DemoScenario:
    """Runs the steps against processes it starts and always stops."""

    def __init__(self, home: Path, board: Board) -> None:
        self.home = home
        self.board = board
        self.steps: list[Step] = []
        self.fake = FakeTelegram()
        self.serves = {name: ServeProcess(home, name) for name in (FRONTEND, BACKEND)}
        self.bridge = BridgeProcess(home, "", allow=[PERSON.id])
        self.proxy: FaultProxy | None = None

    def children(self) -> list[ServeProcess | BridgeProcess]:
        """Every subprocess wrapper, for the last-resort kill on the way out."""
        return [*self.serves.values(), self.bridge]

    # --- the person ------------------------------------------------------------------------

    def says(self, text: str, session: str, *, reply_to: BotMessage | None = None, held: bool = False) -> str:
        """The person writes ``text`` (as a reply to ``reply_to``); returns the response id."""
        update = self.fake.message(PERSON, text, reply_to=reply_to.message_id if reply_to else None)
        response_id = f"tg:{PERSON.id}:{update['message']['message_id']}"
        what = "reply" if reply_to else "text"
        self.expect(response_id, session, what, held=held)
        return response_id

    def taps(self, message: BotMessage, label: str, session: str) -> str:
        """The person taps the button ``label`` under ``message``; returns the response id."""
        update = self.fake.press(PERSON, message, label)
        response_id = f"tg:cb:{update['callback_query']['id']}"
        self.expect(response_id, session, "tap")
        return response_id

    def expect(
        self, response_id: str, session: str, what: str, *, held: bool = False, at: float | None = None
    ) -> None:
        at = time.perf_counter() if at is None else at
        self.board.tally.expect(DemoSent(response_id, session, what, at, self.board.step, held=held))

    async def bot_message(self, needle: str) -> BotMessage:
        """The bot's newest message to the person containing ``needle`` (waits for it)."""

        def find() -> BotMessage | None:
            found = [m for m in self.fake.messages(PERSON.id) if needle in m.text]
            return found[-1] if found else None

        message: BotMessage = await self.fake.wait_for(find, timeout=_WAIT_S)
        return message

    async def arrived(self, *response_ids: str) -> None:
        """Wait until every one of ``response_ids`` has reached a session."""
        await self.board.wait_for(
            lambda: not self.board.tally.outstanding(response_ids),
            _WAIT_S,
            f"{len(self.board.tally.outstanding(response_ids))} answers to arrive",
        )

    # --- the run -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def step(self, name: str, title: str) -> AsyncIterator[None]:
        started = time.perf_counter()
        self.board.step = name
        self.board.note("step", title)
        completed = False
        try:
            yield
            completed = True
        finally:
            origin = self.board.origin
            self.steps.append(Step(name, title, started - origin, time.perf_counter() - started, completed))

    async def run(self) -> None:
        """Start everything, play every step, stop everything (also on failure or cancellation)."""
        async with AsyncExitStack() as stack:
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            await self.start(stack, tg)
            await self.answers()
            await self.tier_two()
            await self.black_hole()
            await self.kill_and_restart()
            await self.flood()
            await self.settle()

    async def _stop_all(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            async with anyio.create_task_group() as tg:
                for serve in self.serves.values():
                    tg.start_soon(serve.stop)
                tg.start_soon(self.bridge.stop)

    async def start(self, stack: AsyncExitStack, tg: anyio.abc.TaskGroup) -> None:
        async with self.step("start", "Starting a fake Telegram, the bridge and two sessions"):
            (self.home / "config.toml").write_text(f"allow = [{PERSON.id}]\n")
            await stack.enter_async_context(self.fake.serving())
            self.bridge.api_base = self.fake.base_url
            for serve in self.serves.values():
                await stack.enter_async_context(serve)
            stack.push_async_callback(self._stop_all)  # first on the way out, shielded from cancellation
            await self.bridge.start()
            for name, serve in self.serves.items():
                await serve.wait_session()
                await serve.initialize()
                tg.start_soon(follow_session, serve, self.board)
                self.board.note("info", f"serve up (pid {serve.process.pid if serve.process else '?'})", name)
            info = await self.bridge.wait_ready()
            self.board.note("info", f"bridge up (pid {info['pid']}, API {info['api_url']})")
            tg.start_soon(follow_jsonl, self.home / "audit.jsonl", audit_handler(self.board))
            tg.start_soon(follow_jsonl, self.bridge.stderr_path, bridge_log_handler(self.board))
            tg.start_soon(poll_health, info["api_url"], self.board)
            self.proxy = await stack.enter_async_context(FaultProxy(*self._sidecar(BACKEND)))
            self._route_through_proxy(BACKEND)
            self.board.note("info", f"webhook now through a fault proxy (:{self.proxy.port})", BACKEND)
            self.fake.message(PERSON, "/start")
            await self.bot_message("carries your answers")

    def _sidecar(self, session: str) -> tuple[str, int]:
        return sidecar_address(self.home, session)

    def _route_through_proxy(self, session: str) -> None:
        # The bridge finds a session's webhook in session.json; pointing it at the proxy puts the
        # proxy on the network path between them, as a flaky link or a stuck middlebox would be.
        assert self.proxy is not None
        point_webhook_at(self.home, session, self.proxy.url(WEBHOOK_PATH))

    async def answers(self) -> None:
        front, back = self.serves[FRONTEND], self.serves[BACKEND]
        async with self.step("tap", "frontend asks a question (ask_user); the person taps a button"):
            await front.call_tool("reply", {"chat_id": PERSON.id, "text": "Working on the login page."})
            await front.call_tool(
                "ask_user", {"question": "Ship the release to staging?", "options": ["ship it", "wait"]}
            )
            question = await self.bot_message("Ship the release to staging?")
            await self.arrived(self.taps(question, "ship it", FRONTEND))
        async with self.step("reply", "backend writes; the person replies to that message"):
            await back.call_tool("reply", {"chat_id": PERSON.id, "text": "Tests pass. Merge?"})
            said = await self.bot_message("Tests pass. Merge?")
            await self.arrived(self.says("merge it", BACKEND, reply_to=said))
        async with self.step("text", "plain text goes to the session that wrote last (backend)"):
            await self.arrived(self.says("and bump the version", BACKEND))
        async with self.step("permission", "frontend asks to run a tool; the person taps Allow"):
            await front.send(
                {
                    "jsonrpc": "2.0",
                    "method": PERMISSION_REQUEST,
                    "params": {
                        "request_id": "dmqxz",
                        "tool_name": "Bash",
                        "description": "Run the test suite",
                        "input_preview": '{"command": "npm test"}',
                    },
                }
            )
            prompt = await self.bot_message("wants to use Bash")
            response_id = self.taps(prompt, "✅ Allow", FRONTEND)
            self.board.permissions["dmqxz"] = response_id
            await self.arrived(response_id)

    async def tier_two(self) -> None:
        assert self.proxy is not None
        proxy = self.proxy
        async with self.step("reset", "backend's link resets one request: the bridge redelivers (tier 2)"):
            said = await self.bot_message("Tests pass. Merge?")
            for attempt in range(1, 4):
                proxy.set(Fault.RESET)
                before = proxy.exchanges
                response_id = self.says(f"also tag it v2.{attempt}", BACKEND, reply_to=said)
                await proxy.wait_exchanges(before + 1, timeout=_WAIT_S)
                proxy.set(Fault.PASS)  # the link is back before the first redelivery is due
                await self.arrived(response_id)
                first = self.board.tally.first(response_id)
                if first is not None and first.tier == 2:  # else a machine too busy for the budget: again
                    break

    async def black_hole(self) -> None:
        assert self.proxy is not None
        proxy = self.proxy
        said = await self.bot_message("Tests pass. Merge?")
        async with self.step(
            "blackhole", "backend's link swallows every request: breaker opens, inbox carries"
        ):
            proxy.set(Fault.BLACKHOLE)
            sent = [self.says(f"note {n} while the link is down", BACKEND, reply_to=said) for n in (1, 2, 3)]
            await self.arrived(*sent)
            await self.board.wait_for(
                lambda: self.board.breaker_state(BACKEND) == "open", _WAIT_S, "backend's breaker to open"
            )
        async with self.step("recover", "the link heals: the breaker's probe succeeds and closes it"):
            proxy.set(Fault.PASS)
            for attempt in range(1, 6):
                due = self.board.breakers.get(BACKEND, {}).get("next_probe_at") or time.time()
                await anyio.sleep(max(0.0, float(due) - time.time()))  # the breaker's own schedule
                response_id = self.says(f"back online? ({attempt})", BACKEND, reply_to=said)
                await self.arrived(response_id)
                first = self.board.tally.first(response_id)
                if first is not None and first.tier == 1:  # the probe went through
                    break
            await self.board.wait_for(
                lambda: self.board.breaker_state(BACKEND) == "closed", _WAIT_S, "backend's breaker to close"
            )

    async def kill_and_restart(self) -> None:
        front = self.serves[FRONTEND]
        said = await self.bot_message("Working on the login page.")
        async with self.step("kill", "frontend's server is killed (SIGKILL): answers wait in its inbox"):
            front.kill(signal.SIGKILL)
            await front.wait_exit()
            self.board.note("info", "serve killed", FRONTEND)
            held = [
                self.says(text, FRONTEND, reply_to=said, held=True)
                for text in ("use the blue button", "and add a logout link")
            ]
            receipts = self.board.receipts
            await self.board.wait_for(
                lambda: all(receipts.get(r, {}).get("status") == "queued" for r in held),
                _WAIT_S,
                "the bridge to queue both answers",
            )
            try:
                await self.fake.wait_for(lambda: len(self.fake_acks(FRONTEND)) >= len(held), timeout=_WAIT_S)
            except TimeoutError as exc:
                raise TimeoutError(f"waited {_WAIT_S:g} s for the bridge to tell the person") from exc
            waiting = len(list((SessionPaths(self.home, FRONTEND).inbox / "new").glob("*.json")))
            self.board.note("info", f"{waiting} answers wait in the inbox; the person was told", FRONTEND)
        async with self.step("restart", "frontend starts again: the queued answers arrive"):
            await front.start()
            await front.wait_session()
            await front.initialize()
            self.board.note(
                "info", f"serve up again (pid {front.process.pid if front.process else '?'})", FRONTEND
            )
            await self.arrived(*held)

    async def settle(self) -> None:
        async with self.step("settle", "Waiting until nothing is in flight anywhere"):
            sent = self.board.tally.sent
            await self.arrived(*sent)
            # Every answer the bridge carried has its receipt (its outbox entry is gone), and every
            # inbox is empty: nothing is left that could still reach a session, so the count is final.
            through_bridge = [r for r, s in sent.items() if s.what != "inbox file"]
            await self.board.wait_for(
                lambda: all(r in self.board.receipts for r in through_bridge),
                _WAIT_S,
                "the bridge's receipts",
            )
            with anyio.fail_after(_WAIT_S):
                while not self._inboxes_empty():  # noqa: ASYNC110 - serve empties them, in another process
                    await anyio.sleep(0.02)

    def _inboxes_empty(self) -> bool:
        inboxes = [SessionPaths(self.home, name).inbox for name in self.serves]
        return not any(any((inbox / d).iterdir()) for inbox in inboxes for d in ("new", "cur"))

    def fake_acks(self, session: str) -> list[BotMessage]:
        return [m for m in self.fake.messages(PERSON.id) if m.text.startswith(f"⏳ Queued for {session}")]

    async def flood(self) -> None:
        inbox = SessionPaths(self.home, BACKEND).inbox
        async with self.step("flood", f"{FLOOD} answers dropped into backend's inbox at once"):
            responses = [
                make_response(
                    type="message",
                    user_id=PERSON.id,
                    text=f"flood {n}",
                    id=f"demo:flood:{n:03d}",
                    session=BACKEND,
                )
                for n in range(FLOOD)
            ]

            def write_all() -> list[float]:
                written = []
                for response in responses:
                    written.append(time.perf_counter())
                    enqueue(inbox, response)
                return written

            for response, at in zip(responses, await anyio.to_thread.run_sync(write_all), strict=True):
                self.expect(response.id, BACKEND, "inbox file", at=at)
            ids = [r.id for r in responses]
            await self.arrived(*ids)
            self.board.note("info", f"all {FLOOD} arrived", BACKEND, 3)
