"""``mcp-cascade inspect``: the operator's view of a home (status, queue, trace, watch, selftest)."""

from mcp_cascade.ops.inspect.command import add_arguments, run

__all__ = ["add_arguments", "run"]
