"""The bridge's routing table is purged by retention like the session stores."""

from __future__ import annotations

import time
from pathlib import Path

from mcp_cascade.bridge.ledger import Ledger

DAY = 86400.0


def test_the_ledger_forgets_prompts_and_messages_older_than_the_retention(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    try:
        old = ledger.new_prompt("ask", "shop", 1, "Deploy?", ("yes", "no"))
        ledger.sent(1, 10, "shop", old.token)
        later = time.time() + 8 * DAY  # eight days on
        fresh = ledger.new_prompt("ask", "shop", 1, "Again?", ("yes", "no"))
        ledger.sent(1, 11, "shop", fresh.token)
        # Nothing is old enough yet with a 7-day retention today.
        assert ledger.purge(7 * DAY) == (0, 0)
        # Eight days on, as seen from a clock that moved: both rows written "now" are 8 days old.
        assert ledger.purge(7 * DAY, now=later) == (2, 2)
        assert ledger.prompt(old.token) is None and ledger.session_of(1, 10) is None
        assert ledger.route(1) is not None  # the chat's chosen session is not history; it stays
    finally:
        ledger.close()
