"""A long-lived sender process, as a bridge is one: responses in on stdin, receipts out on stdout.

``python -m mcp_cascade.soak.worker --home H`` reads one JSON object per line,
``{"response": {...}, "session": "..."}``, delivers each through a real
:class:`~mcp_cascade.send.cascade.Sender` (its own outbox, its own re-drive of
entries left by senders that died) and writes ``{"receipt": {...}}`` per
response. The soak harness kills it with SIGKILL mid-stream and starts another.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from mcp_cascade.live_config import LiveConfig
from mcp_cascade.ops.telemetry import AuditTrail, JsonLog, Telemetry
from mcp_cascade.response import from_dict
from mcp_cascade.send.cascade import Sender
from mcp_cascade.soak.rig import SoakAck


async def _deliver(sender: Sender, line: str) -> None:
    data: dict[str, Any] = json.loads(line)
    receipt = await sender.deliver(from_dict(data["response"]), data["session"])
    # One short line per write into a pipe the harness keeps draining: written whole, never interleaved.
    sys.stdout.write(json.dumps({"receipt": receipt.to_dict()}) + "\n")
    sys.stdout.flush()


async def main(home: Path) -> None:
    """Deliver what stdin brings until it closes."""
    live = LiveConfig(home, {}, {})
    telemetry = Telemetry(
        log=JsonLog(sys.stderr, live.current.log_level, component="soak-worker"),
        audit=AuditTrail(home / "audit.jsonl", live.current.audit_max_bytes, "send"),
        metrics=None,
    )
    stdin = anyio.wrap_file(sys.stdin)
    try:
        async with Sender(home, live, telemetry, ack=SoakAck()) as sender, anyio.create_task_group() as tg:
            async for line in stdin:
                if line.strip():
                    tg.start_soon(_deliver, sender, line)
    finally:
        telemetry.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--home", required=True, type=Path)
    anyio.run(main, parser.parse_args().home)
