"""Routing: which session each update reaches and what response it becomes (real ledger and session files)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from mcp_cascade.bridge.access import Access
from mcp_cascade.bridge.ledger import Ledger
from mcp_cascade.bridge.routing import Deliver, Drop, Router, Say
from mcp_cascade.bridge.updates import Incoming, button_data, parse_button, parse_command, parse_verdict
from mcp_cascade.config import Config
from mcp_cascade.durable import atomic_write_json
from mcp_cascade.response import User
from mcp_cascade.sessions import SessionPaths

ALICE = User(42, "alice", "Alice")
STRANGER = User(666, "mallory", None)
_ids = itertools.count(1)


def _session(
    home: Path, name: str, started_at: str, *, alive: bool = True, label: str | None = None, cwd: str = ""
) -> None:
    paths = SessionPaths(home, name)
    paths.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        paths.session_json,
        {
            "protocol": 1,
            "session_id": name,
            "pid": os.getpid() if alive else 2**22 + 1,
            "webhook_url": "http://127.0.0.1:9/webhook/bridge-response",
            "health_url": "http://127.0.0.1:9/health",
            "started_at": started_at,
            "cwd": cwd or f"/work/{name}",
            "label": label or name.split("-")[0],
        },
    )


def _text(text: str, user: User = ALICE, reply_to: int | None = None) -> Incoming:
    n = next(_ids)
    return Incoming(
        n, "message", user, user.id, 100 + n, "2026-11-29T10:00:00Z", text=text, reply_to=reply_to
    )


def _tap(data: str, message_id: int, user: User = ALICE) -> Incoming:
    n = next(_ids)
    return Incoming(
        n,
        "callback",
        user,
        user.id,
        message_id,
        "2026-11-29T10:00:00Z",
        callback_id=f"cb{n}",
        callback_data=data,
    )


@pytest.fixture
def ledger(home: Path) -> Ledger:
    return Ledger.open(home / "bridge" / "ledger.db")


def _router(home: Path, ledger: Ledger, allow: tuple[int, ...] = (42,)) -> Router:
    config = Config.model_validate({"allow": list(allow)})
    return Router(home, ledger, Access(home, lambda: config))


def test_strangers_are_dropped_and_only_get_a_pairing_code_while_nobody_is_allowed(
    home: Path, ledger: Ledger
) -> None:
    prompt = ledger.new_prompt("permission", "proj-a", 42, "may I?", (), "abcde")
    ledger.sent(42, 9, "proj-a", prompt.token)
    guarded = _router(home, ledger)
    assert isinstance(guarded.decide(_text("hello", STRANGER)), Drop)
    assert isinstance(guarded.decide(_tap(button_data("p", prompt.token, "a"), 9, STRANGER)), Drop)
    shown = ledger.prompt(prompt.token)
    assert shown is not None and shown.answer is None  # the stranger's tap answered nothing
    open_bot = _router(home, ledger, allow=())
    offer = open_bot.decide(_text("hello", STRANGER))
    assert isinstance(offer, Say) and "mcp-cascade bridge pair " in offer.text
    assert isinstance(open_bot.decide(_tap(button_data("p", prompt.token, "a"), 9, STRANGER)), Drop)


def test_a_permission_tap_becomes_a_permission_response_for_the_prompts_session(
    home: Path, ledger: Ledger
) -> None:
    router = _router(home, ledger)
    prompt = ledger.new_prompt("permission", "proj-a", 42, "may I?", (), "abcde")
    ledger.sent(42, 9, "proj-a", prompt.token)
    tap = _tap(button_data("p", prompt.token, "d"), 9)
    decision = router.decide(tap)
    assert isinstance(decision, Deliver) and decision.session == "proj-a"
    response = decision.response
    assert (response.id, response.type, response.request_id, response.behavior) == (
        f"tg:cb:{tap.callback_id}",
        "permission",
        "abcde",
        "deny",
    )
    assert response.session == "proj-a" and response.chat_id == 42 and response.message_id == 9
    assert isinstance(router.decide(tap), Deliver)  # the same update again (a restart) still delivers
    late = router.decide(_tap(button_data("p", prompt.token, "a"), 9))
    assert isinstance(late, Say) and late.text == "Already answered: ❌ Denied"


def test_an_option_tap_carries_the_request_id_and_the_option_within_64_bytes(
    home: Path, ledger: Ledger
) -> None:
    router = _router(home, ledger)
    options = ("ship it", "é" * 50)
    prompt = ledger.new_prompt("ask", "proj-b", 42, "which?", options)
    ledger.sent(42, 11, "proj-b", prompt.token)
    decision = router.decide(_tap(button_data("q", prompt.token, "1"), 11))
    assert isinstance(decision, Deliver) and decision.session == "proj-b"
    response = decision.response
    assert response.type == "callback" and response.request_id == prompt.request_id
    assert response.text == options[1]
    assert response.callback_data is not None and len(response.callback_data.encode()) <= 64
    assert response.meta == {"option_index": "1"}


def test_forged_or_stale_buttons_are_refused(home: Path, ledger: Ledger) -> None:
    router = _router(home, ledger)
    prompt = ledger.new_prompt("ask", "proj-b", 42, "which?", ("a",))
    for data in (
        "p:0123456789:a",
        button_data("q", prompt.token, "5"),
        button_data("p", prompt.token, "a"),
        "x" * 64,
    ):
        decision = router.decide(_tap(data, 11))
        assert isinstance(decision, Say) and "no longer valid" in decision.text


def test_yes_code_answers_the_open_prompt_and_is_plain_text_otherwise(home: Path, ledger: Ledger) -> None:
    _session(home, "proj-c", "2026-11-29T09:00:00Z")
    router = _router(home, ledger)
    prompt = ledger.new_prompt("permission", "proj-a", 42, "may I?", (), "fghij")
    ledger.sent(42, 9, "proj-a", prompt.token)
    verdict = router.decide(_text("  YES fghij "))
    assert isinstance(verdict, Deliver) and verdict.session == "proj-a"
    assert verdict.response.type == "permission" and verdict.response.behavior == "allow"
    again = router.decide(_text("no fghij"))
    assert (
        isinstance(again, Deliver) and again.response.type == "message" and again.response.text == "no fghij"
    )


def test_replies_reach_the_session_that_wrote_and_plain_text_the_current_one(
    home: Path, ledger: Ledger
) -> None:
    _session(home, "old-1", "2026-11-29T08:00:00Z")
    _session(home, "new-2", "2026-11-29T09:00:00Z")
    _session(home, "gone-3", "2026-11-29T10:00:00Z", alive=False)
    router = _router(home, ledger)
    first = router.decide(_text("hi"))
    assert isinstance(first, Deliver) and first.session == "new-2"  # the newest live session
    ledger.sent(42, 50, "old-1")
    plain = router.decide(_text("and you?"))
    assert isinstance(plain, Deliver) and plain.session == "old-1"  # the one that last wrote here
    question = ledger.new_prompt("ask", "new-2", 42, "name?", ())
    ledger.sent(42, 51, "new-2", question.token)
    reply = router.decide(_text("Bob", reply_to=51))
    assert isinstance(reply, Deliver) and reply.session == "new-2"
    assert reply.response.request_id == question.request_id and reply.response.text == "Bob"
    to_old = router.decide(_text("thanks", reply_to=50))
    assert isinstance(to_old, Deliver) and to_old.session == "old-1" and to_old.response.request_id is None


def test_sessions_lists_live_ones_and_use_picks_one_that_sticks(home: Path, ledger: Ledger) -> None:
    _session(home, "alpha-1", "2026-11-29T08:00:00Z")
    _session(home, "beta-2", "2026-11-29T09:00:00Z")
    _session(home, "gone-3", "2026-11-29T10:00:00Z", alive=False)
    router = _router(home, ledger)
    listing = router.decide(_text("/sessions"))
    assert isinstance(listing, Say)
    assert "▶ beta-2" in listing.text and "• alpha-1" in listing.text and "gone-3" not in listing.text
    assert router.decide(_text("/use alp")) == Say("Now talking to alpha-1.")
    ledger.sent(42, 60, "beta-2")
    plain = router.decide(_text("hello"))
    assert isinstance(plain, Deliver) and plain.session == "alpha-1"
    assert router.decide(_text("/use gone-3")) == Say("Now talking to gone-3.")
    assert isinstance(router.decide(_text("/use nope")), Say)
    _session(home, "beta-9", "2026-11-29T07:00:00Z", alive=False)
    ambiguous = router.decide(_text("/use beta"))
    assert ambiguous == Say("'beta' matches several sessions: beta-2, beta-9")


def test_two_windows_of_one_folder_are_listed_apart_and_either_can_be_picked(
    home: Path, ledger: Ledger
) -> None:
    _session(home, "shop-12a3286e", "2026-11-29T08:00:00Z", label="shop", cwd="/work/shop")
    _session(home, "shop-12a3286e-2", "2026-11-29T09:30:00Z", label="shop #2", cwd="/work/shop")
    router = _router(home, ledger)
    listing = router.decide(_text("/sessions"))
    assert isinstance(listing, Say)
    pid = os.getpid()
    assert f"1. ▶ shop-12a3286e-2: shop #2 in /work/shop, started 2026-11-29 09:30, pid {pid}" in listing.text
    assert f"2. • shop-12a3286e: shop in /work/shop, started 2026-11-29 08:00, pid {pid}" in listing.text
    assert router.decide(_text("/use 2")) == Say("Now talking to shop-12a3286e.")
    plain = router.decide(_text("to the first window"))
    assert isinstance(plain, Deliver) and plain.session == "shop-12a3286e"
    assert router.decide(_text("/use shop-12a3286e-2")) == Say("Now talking to shop-12a3286e-2.")
    # The folder's id names the first window exactly, though the second's id starts with it.
    assert router.decide(_text("/use shop-12a3286e")) == Say("Now talking to shop-12a3286e.")
    assert router.decide(_text("/use shop #2")) == Say("Now talking to shop-12a3286e-2.")


def test_with_no_session_at_all_the_person_is_told(home: Path, ledger: Ledger) -> None:
    decision = _router(home, ledger).decide(_text("anyone?"))
    assert isinstance(decision, Say) and "No Claude Code session" in decision.text


def test_small_parsers() -> None:
    assert parse_verdict("y abcde") == ("allow", "abcde")
    assert parse_verdict("No ABCDE") == ("deny", "abcde")
    assert parse_verdict("yes abcdl") is None  # l is never in Claude Code's codes
    assert parse_verdict("yes please") is None
    assert parse_command("/use@cascade_bot my-proj") == ("use", "my-proj")
    assert parse_command("hello /use") is None
    data = button_data("q", "0123456789", "3")
    assert len(data.encode()) <= 64
    assert parse_button(data) is not None and parse_button("q:0123456789:x") is None
