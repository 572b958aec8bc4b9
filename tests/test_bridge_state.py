"""The bridge's durable state: the outbox (updates before offsets) and the ledger (prompts, replies)."""

from __future__ import annotations

import json
from pathlib import Path

from mcp_cascade.bridge.ledger import Ledger
from mcp_cascade.bridge.outbox import UpdateOutbox
from mcp_cascade.response import make_response


def _update(uid: int, text: str = "hi") -> tuple[int, str]:
    return uid, json.dumps({"update_id": uid, "text": text})


def test_ingest_records_updates_and_the_next_offset_together_and_ignores_repeats(tmp_path: Path) -> None:
    outbox = UpdateOutbox.open(tmp_path / "outbox.db")
    assert outbox.offset() is None
    assert outbox.ingest([_update(5), _update(6)]) == 2
    assert outbox.offset() == 7
    assert outbox.ingest([_update(6), _update(7)]) == 1
    assert outbox.offset() == 8
    assert outbox.ingest([_update(3)]) == 1  # an old id never moves the offset back
    assert outbox.offset() == 8
    assert [e.update_id for e in outbox.pending()] == [3, 5, 6, 7]
    outbox.close()


def test_an_update_keeps_its_routed_response_and_state_across_a_reopen(tmp_path: Path) -> None:
    outbox = UpdateOutbox.open(tmp_path / "outbox.db")
    outbox.ingest([_update(1), _update(2)])
    response = make_response(type="message", user_id=42, text="hi", id="tg:42:1", session="s-a", chat_id=42)
    outbox.route(1, "s-a", response)
    outbox.done(2, "answered directly")
    outbox.close()
    again = UpdateOutbox.open(tmp_path / "outbox.db")
    (entry,) = again.pending()
    assert entry.update_id == 1 and entry.state == "routed" and entry.session == "s-a"
    assert entry.response == response
    again.delivered(1, "queued")
    assert again.pending()[0].note == "queued"
    assert again.depth() == 1
    again.done(1)
    assert again.depth() == 0 and again.oldest_pending() is None
    assert again.purge(0.0, now=10**12) == 2
    assert (tmp_path / "outbox.db").stat().st_mode & 0o777 == 0o600


def test_the_first_answer_to_a_prompt_wins(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    prompt = ledger.new_prompt("permission", "s-a", 42, "may I?", (), "abcde")
    assert prompt.request_id == "abcde" and len(prompt.token) == 10
    ledger.sent(42, 9, "s-a", prompt.token)
    assert ledger.open_permission(42, "abcde") is not None
    first = ledger.answer(prompt.token, "allow", "tg:cb:1")
    second = ledger.answer(prompt.token, "deny", "tg:cb:2")
    again = ledger.answer(prompt.token, "allow", "tg:cb:1")
    assert first is not None and first.answer == "allow" and first.answered_by == "tg:cb:1"
    assert second is not None and second.answered_by == "tg:cb:1"
    assert again == first
    assert ledger.open_permission(42, "abcde") is None
    assert ledger.answered_by("tg:cb:1") == first
    assert ledger.prompt_at(42, 9) == first
    assert ledger.answer("nosuchtoken", "allow", "tg:cb:3") is None


def test_replies_route_to_the_sender_and_a_chosen_session_sticks(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    ledger.sent(42, 1, "s-a")
    ledger.sent(42, 2, "s-b")
    assert ledger.session_of(42, 1) == "s-a"
    assert ledger.session_of(42, 2) == "s-b"
    assert ledger.session_of(42, 3) is None
    route = ledger.route(42)
    assert route is not None and route.session == "s-b" and not route.chosen
    ledger.choose(42, "s-a")
    ledger.sent(42, 3, "s-b")
    route = ledger.route(42)
    assert route is not None and route.session == "s-a" and route.chosen
    assert ledger.chats() == []
    ledger.seen(42)
    ledger.seen(7)
    assert ledger.chats() == [7, 42]
