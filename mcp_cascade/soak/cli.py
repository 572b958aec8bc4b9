"""``mcp-cascade soak``: parse the choice of scenarios and size, run them, print and save the report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from mcp_cascade.errors import ConfigError
from mcp_cascade.ops.progress import progress_bar
from mcp_cascade.remote.servers import nats_server_binary
from mcp_cascade.soak import SCENARIOS, soak
from mcp_cascade.soak.cluster import NAME as CLUSTER
from mcp_cascade.soak.disk import enter_namespace
from mcp_cascade.soak.report import render

SIZES = {"small": 240, "full": 10_000}


def cmd_soak(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the reliability scenarios and/or the load test; exit 1 when any response is lost or doubled."""
    known: dict[str, Any] = {s.name: s for s in SCENARIOS}
    known[CLUSTER] = None  # run by soak/cluster.py: real nats-server processes, not the one-home rig
    names = (
        list(known) if args.scenario == "all" else [] if args.scenario == "none" else args.scenario.split(",")
    )
    for name in names:
        if name not in known:
            raise ConfigError("scenario", f"{name!r} is not one of all, none, {', '.join(known)}")
    if CLUSTER in names and nats_server_binary() is None:
        if args.scenario != "all":
            raise ConfigError(
                "scenario", "cluster needs nats-server on PATH (Debian: apt-get install nats-server)"
            )
        names.remove(CLUSTER)
    count = SIZES.get(args.count) or (int(args.count) if args.count.isdigit() else 0)
    if count < 10:
        raise ConfigError("count", f"{args.count!r}: give small, full or a number of responses (at least 10)")
    if any(known[n] is not None and known[n].needs_mounts for n in names):
        enter_namespace(sys.argv[1:])  # disk faults need mounts: re-run in a private mount namespace
    command = "mcp-cascade soak " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["soak"] else sys.argv[1:])
    workdir = Path(args.workdir) if args.workdir else None
    json_path = Path(args.json) if args.json else None
    with progress_bar("soak", count * len(names), plain=json_path is not None) as tick:
        report = anyio.run(
            lambda: soak(
                names, count, args.seed, workdir=workdir, json_path=json_path, command=command, tick=tick
            )
        )
    if args.load:
        from mcp_cascade.soak.load import run_load

        report["load"] = anyio.run(lambda: run_load(duration_s=args.load_duration, seed=args.seed))
        report["summary"]["passed"] = report["summary"]["passed"] and not report["load"]["lost"]
        if json_path is not None:
            json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    render(report)
    return 0 if report["summary"]["passed"] else 1
