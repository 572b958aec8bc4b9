"""Acknowledgments by the tools and the push loop's delivered mark, in either order."""

from __future__ import annotations

from pathlib import Path

from mcp_cascade.receive.store import Store
from mcp_cascade.response import from_dict
from tests.helpers import body


def test_an_acknowledgment_made_while_the_push_is_in_flight_survives_the_delivered_mark(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        store.accept(from_dict(body(id="a:1", request_id="rq-1")), tier=1)
        (claimed,) = store.claim(10)
        assert store.ack(["a:1"]) == 1  # wait_for_response answered between claim and mark
        store.mark_delivered([claimed.seq])
        assert store.unacked("rq-1") == []
    finally:
        store.close()


def test_a_response_marked_delivered_stays_unacknowledged_until_a_tool_acknowledges_it(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        store.accept(from_dict(body(id="a:2")), tier=1)
        (claimed,) = store.claim(10)
        store.mark_delivered([claimed.seq])
        assert [s.response.id for s in store.unacked()] == ["a:2"]
        assert store.ack(["a:2"]) == 1
        assert store.unacked() == []
    finally:
        store.close()
