"""The ``mcp-cascade demo`` handler; the demo's heavy imports wait until it runs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path


def cmd_demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the demo; exit 0 only when every response was delivered exactly once."""
    from mcp_cascade.demo.run import run_demo

    # Never the user's own home: a temporary one, or an empty directory named with --home.
    home = Path(args.home).expanduser().resolve() if args.home else None
    return run_demo(json_out=args.json, home=home)
