"""A push that cannot be recorded (the disk filled up meanwhile) does not stop the engine.

The store is made unwritable between the claim and the delivered mark with
SQLite's ``query_only`` (root ignores file modes; a full filesystem cannot be
had in a unit test), from inside the push, where a full disk would bite.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from mcp_cascade.errors import StoreUnavailable
from mcp_cascade.events import Event
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.store import Store
from mcp_cascade.response import Response, from_dict
from tests.helpers import body

pytestmark = pytest.mark.anyio


def _read_only(store: Store, on: bool) -> None:
    store._db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")  # the store's own connection


class FillingClient:
    """The client side (and the observer): the disk is full from the first push until it is reported."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pushed: list[str] = []
        self.events: list[Event] = []

    async def push(self, response: Response, tier: int, *, redelivered: bool) -> None:
        self.pushed.append(response.id)
        if len(self.pushed) == 1:
            _read_only(self.store, True)

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if event.event == "push_unrecorded":
            _read_only(self.store, False)


def test_mark_delivered_reports_an_unwritable_store_as_unavailable(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        store.accept(from_dict(body(id="m:1")), 1)
        (claimed,) = store.claim(1)
        _read_only(store, True)
        with pytest.raises(StoreUnavailable) as caught:
            store.mark_delivered([claimed.seq])
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        store.close()


async def test_a_push_that_cannot_be_recorded_leaves_the_engine_delivering(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    client = FillingClient(store)
    engine = Engine(store, "s", client)
    try:
        async with engine.running():
            engine.attach(client)
            with anyio.fail_after(10):
                first = await engine.receive(from_dict(body(id="u:1")), 1)
                second = await engine.receive(from_dict(body(id="u:2")), 1)
        assert (first.status, second.status) == ("delivered", "delivered")
        assert client.pushed == ["u:1", "u:2"]
        (unrecorded,) = [e for e in client.events if e.event == "push_unrecorded"]
        assert "readonly" in (unrecorded.reason or "")
        assert store.counts() == {"pushing": 1, "delivered": 1}  # u:1 comes back flagged after a restart
    finally:
        store.close()
