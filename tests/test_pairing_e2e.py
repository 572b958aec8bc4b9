"""Pairing through the real bridge and the fake Bot API: strangers who write first cannot jam it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import pytest

from mcp_cascade.bridge.access import MAX_PENDING
from mcp_cascade.testing.fake_api import FakeTelegram
from mcp_cascade.testing.fake_types import FakeUser
from tests.bridge_helpers import bridge, message_with

pytestmark = pytest.mark.anyio
OWNER = FakeUser(4200, "Owner", "owner")


async def test_the_owner_gets_a_code_at_once_after_more_strangers_than_the_cap(
    home: Path, fake: FakeTelegram
) -> None:
    """Finding 6: five strangers messaging first left the owner without a reply for up to an hour."""
    async with bridge(home, fake) as running:
        strangers = [FakeUser(9000 + n, f"Stranger {n}", None) for n in range(MAX_PENDING + 2)]
        for stranger in strangers:
            fake.message(stranger, "hi")
        for stranger in strangers:  # each stranger repeats: same code, nothing new pushed out
            fake.message(stranger, "hi again")
        fake.message(OWNER, "hello bot")
        said = await fake.wait_for(message_with(fake, OWNER.id, "mcp-cascade bridge pair"))
        code = re.search(r"pair ([a-z2-9]{6})", said.text)
        assert code is not None
        command = [sys.executable, "-m", "mcp_cascade", "bridge", "pair", code.group(1), "--home", str(home)]
        paired = await anyio.run_process(command)
        assert paired.stdout.decode().startswith("paired @owner (user id 4200)")
        await fake.wait_for(message_with(fake, OWNER.id, "Paired."))
        assert running.process is not None and running.process.returncode is None
