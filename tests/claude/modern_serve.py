"""``serve`` without its handshake fallback: it answers the client's ``server/discover`` probe itself.

Only for the test that shows why the fallback exists: on the 2026-07-28
revision the SDK declares no experimental capability, so Claude Code skips the
channel. Run as ``python -m tests.claude.modern_serve serve --home H``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp.shared.message import SessionMessage

import mcp_cascade.receive.channel
from mcp_cascade.cli import main


async def relay_everything(
    upstream: ObjectReceiveStream[SessionMessage | Exception],
    downstream: ObjectSendStream[SessionMessage | Exception],
    replies: ObjectSendStream[SessionMessage],
    on_refused: Callable[[str], None] = lambda method: None,
) -> None:
    """Pass every client frame to the SDK server, the probe included."""
    async with downstream:
        async for item in upstream:
            await downstream.send(item)


if __name__ == "__main__":
    # serve looks the relay up in the channel module when it starts: replace it there.
    mcp_cascade.receive.channel.handshake_only = relay_everything
    sys.exit(main())
