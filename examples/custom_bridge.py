"""A bridge in a few lines: every line typed on stdin is an answer, delivered through the cascade.

    python examples/custom_bridge.py SESSION [--home DIR]

Swap stdin for your chat system's events; the cascade does the rest (signed
webhook, retries behind a breaker, the inbox when the session is closed), and
the ``ack`` hook is where a real bridge tells the person their answer is queued.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import anyio

from mcp_cascade import Sender
from mcp_cascade.config import resolve_home
from mcp_cascade.events import NullObserver
from mcp_cascade.live_config import LiveConfig
from mcp_cascade.response import Response, make_response


async def ack(response: Response, session: str, reason: str) -> None:
    print(f"(queued for {session}: {reason})", file=sys.stderr)


async def main(session: str, home_flag: str | None) -> None:
    live = LiveConfig(resolve_home(home_flag, os.environ), os.environ)
    async with Sender(live.loaded.home, live, NullObserver(), ack=ack) as sender:
        async for line in anyio.wrap_file(sys.stdin):
            response = make_response(type="message", user_id=0, text=line.rstrip("\n"))
            receipt = await sender.deliver(response, session)
            print(json.dumps({"id": receipt.response_id, "status": receipt.status, "tier": receipt.tier}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("session")
    parser.add_argument("--home")
    args = parser.parse_args()
    anyio.run(main, args.session, args.home)
