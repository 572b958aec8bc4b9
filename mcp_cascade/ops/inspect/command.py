"""The ``inspect`` subcommands: arguments, and what each prints (tables, or JSON with ``--json``).

Exit codes: 0 done; 1 the thing asked about is unwell or unknown (a selftest
failed, no trace found); 2 it cannot be asked (no home, session not running),
with one line on stderr and never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from mcp_cascade.config import Loaded, load_config, resolve_home
from mcp_cascade.durable import atomic_write_json
from mcp_cascade.errors import CascadeError, SessionNotFound
from mcp_cascade.ops.inspect import views
from mcp_cascade.ops.inspect.queue import list_queue, retry
from mcp_cascade.ops.inspect.snapshot import SessionView, take_snapshot
from mcp_cascade.ops.inspect.targets import file_sd
from mcp_cascade.ops.inspect.trace import find
from mcp_cascade.ops.inspect.watch import watch
from mcp_cascade.receive.selftest import run_selftest
from mcp_cascade.sessions import list_sessions, read_session
from mcp_cascade.signing import Signer, load_or_create_secret

_HELP = {
    "status": "every session and the bridge: tiers, breakers, queues, recent latency, failovers",
    "queue": "responses waiting or failed in a session (store, inbox/new, inbox/failed), oldest first",
    "trace": "the whole path of one response through the tiers, from the audit trail",
    "watch": "status and the newest response events, redrawn every interval",
    "selftest": "a synthetic response through each tier of live sessions: delivered, hidden, counted",
    "targets": "Prometheus file_sd targets for every live sidecar and the bridge (always JSON)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inspect`` subcommands on ``parser``."""
    sub = parser.add_subparsers(dest="inspect_command", required=True, metavar="WHAT")

    def what(name: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")
        p.add_argument("--home", default=argparse.SUPPRESS, help="state directory")
        p.add_argument(
            "--nats-url", dest="cfg_nats_url", help="NATS server(s): also list other hosts' sessions"
        )
        return p

    what("status")
    p = what("queue")
    p.add_argument("session", nargs="?", help="one session (default: all)")
    p.add_argument(
        "--retry", metavar="ID", help="move this failed inbox item (file name or id) back into new/"
    )
    p = what("trace")
    p.add_argument("key", metavar="ID_OR_CORRELATION_ID")
    p = what("watch")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--count", type=int, default=0, help="stop after this many refreshes (default: never)")
    p = what("selftest")
    p.add_argument("session", nargs="?", help="one session (default: every live one)")
    p = what("targets")
    p.add_argument("--write", metavar="FILE", type=Path, help="replace FILE atomically instead of printing")


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Dispatch an ``inspect`` subcommand."""
    home = resolve_home(getattr(args, "home", None), env)
    if not home.is_dir():
        raise CascadeError(
            f"no mcp-cascade home at {home} (nothing ran here yet; use --home or MCP_CASCADE_HOME)"
        )
    loaded = load_config(home, env, {"nats_url": getattr(args, "cfg_nats_url", None)})
    console = Console()
    command: str = args.inspect_command
    if command == "status":
        return anyio.run(_status, loaded, console, args.json)
    if command == "queue":
        return _queue(loaded, console, args)
    if command == "trace":
        return _trace(home, console, args.key, args.json)
    if command == "watch":
        anyio.run(lambda: watch(home, console, interval=args.interval, count=args.count, as_json=args.json))
        return 0
    if command == "targets":
        return _targets(home, args.write)
    return anyio.run(_selftest, loaded, console, args.session, args.json)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


async def _status(loaded: Loaded, console: Console, as_json: bool) -> int:

    snap = await take_snapshot(loaded.home)
    if loaded.config.nats_url:
        snap = replace(snap, sessions=snap.sessions + await _remote_views(loaded))
    if as_json:
        _print_json(snap.to_dict())
    else:
        console.print(views.snapshot(snap))
    return 0


async def _remote_views(loaded: Loaded) -> tuple[SessionView, ...]:
    """Sessions other hosts registered in NATS (one line saying so when NATS cannot be read)."""
    from mcp_cascade.remote.listing import describe, read_registry

    entries, error = await read_registry(loaded.config, loaded.home)
    if error:
        return (SessionView(session="(other hosts)", liveness="unreachable", detail=error),)
    now = time.time()
    return tuple(
        SessionView(
            session=e.session_id,
            liveness="remote" if e.running(now) else "stopped",
            detail=describe(e, now),
            pid=e.pid,
            label=e.label,
            folder=f"{e.host}:{e.cwd}",
            started_at=e.started_at,
            host=e.host,
        )
        for e in entries
    )


def _queue(loaded: Loaded, console: Console, args: argparse.Namespace) -> int:

    if args.retry:
        item = retry(loaded.home, args.retry, args.session, loaded.config.audit_max_bytes)
        if args.json:
            _print_json({"retried": item.to_dict()})
        else:
            console.print(f"moved {item.session} inbox/failed/{item.file} back into inbox/new")
        return 0
    items = list_queue(loaded.home, args.session)
    if args.json:
        _print_json([i.to_dict() for i in items])
    else:
        console.print(views.queue(items))
    return 0


def _trace(home: Path, console: Console, key: str, as_json: bool) -> int:

    found = find(home, key)
    if found is None:
        print(f"mcp-cascade inspect: no record of {key!r} in {home}/audit.jsonl", file=sys.stderr)
        return 1
    if as_json:
        _print_json(found.to_dict())
    else:
        console.print(views.trace(found))
    return 0


def _targets(home: Path, write: Path | None) -> int:
    groups = file_sd(home)
    if write is None:
        _print_json(groups)
        return 0
    try:
        atomic_write_json(write, groups, mode=0o644)  # Prometheus usually runs as another user
    except OSError as exc:
        raise CascadeError(f"cannot write {write}: {exc.strerror or exc}") from exc
    return 0


async def _selftest(loaded: Loaded, console: Console, session: str | None, as_json: bool) -> int:

    home = loaded.home
    if session is not None:
        info = read_session(home, session)
        if info is None or not info.alive:
            raise SessionNotFound(f"session {session!r} is not running (no live session.json under {home})")
        targets = [info]
    else:
        targets = [info for _, info in list_sessions(home) if info is not None and info.alive]
        if not targets:
            raise SessionNotFound(f"no live session under {home}/sessions")
    signer = Signer(load_or_create_secret(home))
    reports = [
        await run_selftest(home, t.session_id, t.webhook_url, signer, rescan_ms=loaded.config.file_rescan_ms)
        for t in targets
    ]
    if as_json:
        _print_json([r.to_dict() for r in reports])
    else:
        console.print(views.selftest(reports))
    return 0 if all(r.ok for r in reports) else 1
