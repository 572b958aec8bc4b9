"""``mcp-cascade demo``: the whole system on one machine, broken one piece at a time, with a verdict.

Light on purpose (the command line imports :mod:`mcp_cascade.demo.command`);
the demo itself is :func:`mcp_cascade.demo.run.run_demo`.
"""
