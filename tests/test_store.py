"""The store's retention of delivered ids."""

from __future__ import annotations

from pathlib import Path

from mcp_cascade.receive.store import Store
from mcp_cascade.response import from_dict
from tests.helpers import body


def test_purge_forgets_only_delivered_responses_past_the_retention(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        old = from_dict(body(id="old:1"))
        pending = from_dict(body(id="old:2"))
        store.accept(old, 1, now=1000.0)
        store.accept(pending, 1, now=1000.0)
        (claimed,) = store.claim(1)  # the oldest: old:1
        store.mark_delivered([claimed.seq])
        week = 7 * 86400
        assert store.purge(week, now=1000.0 + week - 1) == 0
        assert store.purge(week, now=1000.0 + week + 1) == 1
        assert not store.known("old:1")
        assert store.known("old:2")
    finally:
        store.close()
