"""The harness: real ``serve`` and ``bridge`` processes, driven like Claude Code and Telegram would.

It ships inside the package, not as a separate distribution, because the
product itself runs on it: ``mcp-cascade demo`` and ``mcp-cascade soak`` start
their sessions and bridges with these classes, and users test their own
bridges against a real serve with them. It imports nothing the product does
not already need (anyio, the package's own modules).

* :class:`ChildProcess` - spawn, environment, stderr tail, stop then kill,
  ready-by-file; every process below is one.
* :class:`ServeProcess` - ``mcp-cascade serve`` with a JSON-RPC client on its stdio.
* :class:`BridgeProcess` - ``mcp-cascade bridge`` against a Bot API (the fake one in tests).
* :func:`point_webhook_at` / :func:`route_through` - the one way to put a proxy
  between a sender and a session.
* :mod:`mcp_cascade.testing.tally` - the one tally (sent against received: once,
  missing, duplicated, redelivered, per tier) the demo and the soak both count on.
"""

from mcp_cascade.testing.bridge import BridgeProcess, random_token
from mcp_cascade.testing.process import ChildProcess, child_env, module_command, stdout_lines
from mcp_cascade.testing.route import point_webhook_at, route_through, sidecar_address
from mcp_cascade.testing.serve import HANDSHAKE_VERSION, ServeProcess

__all__ = [
    "HANDSHAKE_VERSION",
    "BridgeProcess",
    "ChildProcess",
    "ServeProcess",
    "child_env",
    "module_command",
    "point_webhook_at",
    "random_token",
    "route_through",
    "sidecar_address",
    "stdout_lines",
]
