"""A small sender process for the crash tests: reads response ids on stdin, delivers each, prints receipts.

``python -m tests.sender_stream HOME SESSION [--concurrency N] [--redrive]``: one
line ``<id> <status> <tier>`` on stdout per receipt, flushed, so a test can
kill it with SIGKILL mid-stream and know exactly which ones its caller had
been told about. ``--redrive`` delivers only what the outbox holds and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

from mcp_cascade.config import Config
from mcp_cascade.events import NullObserver
from mcp_cascade.response import make_response
from mcp_cascade.send.cascade import Receipt, Sender


def report(receipt: Receipt) -> None:
    print(receipt.response_id, receipt.status, receipt.tier, flush=True)


async def main(home: Path, session: str, concurrency: int, redrive: bool) -> None:
    async with Sender(home, Config.model_validate({}), NullObserver()) as sender:
        if redrive:
            for receipt in await sender.redrive():
                report(receipt)
            return
        ids = [line.strip() for line in sys.stdin if line.strip()]
        limiter = anyio.CapacityLimiter(concurrency)

        async def one(rid: str) -> None:
            async with limiter:
                response = make_response(type="message", user_id=42, text=f"answer {rid}", id=rid)
                report(await sender.deliver(response, session))

        async with anyio.create_task_group() as tg:
            for rid in ids:
                tg.start_soon(one, rid)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("session")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--redrive", action="store_true")
    args = parser.parse_args()
    anyio.run(main, args.home, args.session, args.concurrency, args.redrive)
