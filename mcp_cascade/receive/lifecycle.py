"""``mcp-cascade sessions``: every session under the home, and ``sessions prune`` for closed ones.

A session is *live* while a serve holds it (:mod:`mcp_cascade.receive.holder`),
*pending* when closed with answers still waiting for it (rows not delivered in
its store, files in its inbox), and *stale* when closed with nothing pending.
Prune removes stale sessions whose last activity is older than ``--older-than``;
a pending one only with ``--force``, which names what it drops. A session is
removed while holding both of its locks, so a serve starting at that moment
waits, then starts afresh.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from mcp_cascade.config import resolve_home
from mcp_cascade.durable import pid_alive, read_json
from mcp_cascade.errors import ConfigError, StoreUnavailable
from mcp_cascade.receive.holder import SERVE_LOCK, SessionBusy, hold, holder_note, holder_pid, is_held
from mcp_cascade.receive.store import Store
from mcp_cascade.sessions import SessionPaths, read_session

State = Literal["live", "pending", "stale"]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One session directory and what it holds."""

    session: str
    state: State
    pid: int | None
    folder: str
    started_at: str
    pending: int
    pending_ids: tuple[str, ...]
    last_active: float


def parse_age(raw: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or plain seconds, as seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", raw)
    if not found:
        raise ConfigError("older-than", f"{raw!r} is not an age like 30d, 12h, 90m or 45s")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def _last_active(paths: SessionPaths) -> float:
    """When a serve last started (its lock note), closed (the store's checkpoint) or got a file.

    Not the directory or the store's journal: reading a store (this command,
    ``inspect``) touches those.
    """
    candidates = [paths.dir / SERVE_LOCK, paths.state_db]
    candidates += [paths.inbox / sub for sub in ("new", "cur", "failed")]
    times = [p.stat().st_mtime for p in candidates if p.exists()]
    return max(times, default=0.0)


def _pending(paths: SessionPaths) -> tuple[str, ...]:
    """Ids of answers not yet delivered: in the store, and files still waiting in the inbox."""
    ids: list[str] = []
    if paths.state_db.exists():
        try:
            store = Store.open_readonly(paths.state_db)
        except StoreUnavailable:
            pass
        else:
            try:
                ids += [s.response.id for s in store.pending(limit=10_000)]
            finally:
                store.close()
    for sub in ("new", "cur"):
        folder = paths.inbox / sub
        if folder.is_dir():
            ids += [f"file {sub}/{p.name}" for p in sorted(folder.iterdir())]
    return tuple(ids)


def survey(home: Path) -> list[SessionEntry]:
    """Every session under ``home``: live first, then pending, then stale; newest activity first."""
    root = home / "sessions"
    entries: list[SessionEntry] = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        paths = SessionPaths(home, folder.name)
        live = is_held(folder)
        info = read_session(home, folder.name) if live else None
        note = holder_note(folder)  # a closed session's last holder: where and when it last ran
        pending = _pending(paths)
        state: State = "live" if live else "pending" if pending else "stale"
        entries.append(
            SessionEntry(
                session=folder.name,
                state=state,
                pid=holder_pid(folder) if live else None,
                folder=info.cwd if info else str(note.get("cwd", "")),
                started_at=info.started_at if info else str(note.get("started_at", "")),
                pending=len(pending),
                pending_ids=pending,
                last_active=_last_active(paths),
            )
        )
    order = {"live": 0, "pending": 1, "stale": 2}
    return sorted(entries, key=lambda e: (order[e.state], -e.last_active))


def remove(home: Path, session: str) -> None:
    """Delete a closed session's directory, holding its locks (SessionBusy if a serve holds it)."""
    held = hold(home, session, explicit=True, wait_s=0)
    try:
        # Renamed first, so a serve starting now never finds a half-deleted directory under the name.
        trash = home / "sessions" / f".pruned-{session}-{secrets.token_hex(4)}"
        held.dir.rename(trash)
        shutil.rmtree(trash)
    finally:
        held.release()


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _pids(home: Path, entries: list[SessionEntry]) -> list[int]:
    """Pids of the live serves and of the bridge of this home (for a logrotate postrotate)."""
    pids = [e.pid for e in entries if e.pid]
    bridge = read_json(home / "bridge" / "bridge.json")
    if isinstance(bridge, dict) and isinstance(bridge.get("pid"), int) and pid_alive(bridge["pid"]):
        pids.append(bridge["pid"])
    return pids


def cmd_sessions(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """List sessions, or prune closed ones."""
    home = resolve_home(args.home, env)
    entries = survey(home)
    if args.action == "prune":
        return _prune(home, entries, args)
    if args.pids:
        print("\n".join(str(pid) for pid in _pids(home, entries)))
        return 0
    if args.json:
        print(json.dumps([asdict(e) for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no sessions in {home}")
        return 0
    now = time.time()
    rows = [("SESSION", "STATE", "PID", "PENDING", "ACTIVE", "STARTED", "FOLDER")]
    for e in entries:
        active = _age(now - e.last_active) + " ago" if e.last_active else "-"
        rows.append(
            (
                e.session,
                e.state,
                str(e.pid or "-"),
                str(e.pending),
                active,
                e.started_at or "-",
                e.folder or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _prune(home: Path, entries: list[SessionEntry], args: argparse.Namespace) -> int:
    cutoff = time.time() - parse_age(args.older_than)
    doing = "would remove" if args.dry_run else "removed"
    removed = kept = 0
    for e in entries:
        if e.state == "live" or e.last_active > cutoff:
            continue
        if e.state == "pending" and not args.force:
            print(f"kept {e.session}: {e.pending} pending answer(s); --force drops them")
            kept += 1
            continue
        if e.state == "pending":
            print(
                f"{'would drop' if args.dry_run else 'dropped'} {e.pending} pending answer(s) of {e.session}:"
            )
            for what in e.pending_ids:
                print(f"  {what}")
        if not args.dry_run:
            try:
                remove(home, e.session)
            except SessionBusy as busy:
                print(f"kept {e.session}: {busy}", file=sys.stderr)
                kept += 1
                continue
        print(f"{doing} {e.session} (last active {_age(time.time() - e.last_active)} ago)")
        removed += 1
    print(f"{doing} {removed} session(s), kept {kept} with pending answers; live sessions are never touched")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sessions [--json | --pids]`` and ``sessions prune [--older-than AGE] [--dry-run] [--force]``."""
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument(
        "--pids", action="store_true", help="print the pids of live serves and the bridge (for logrotate)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    prune = actions.add_parser(
        "prune",
        help="remove closed sessions with nothing pending",
        description="remove closed sessions with nothing pending whose last activity is older than"
        " --older-than; live sessions are never touched",
    )
    prune.add_argument("--home", default=argparse.SUPPRESS, help="state directory (as for sessions)")
    prune.add_argument("--older-than", default="30d", help="age of the last activity (default 30d)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    prune.add_argument("--force", action="store_true", help="also remove sessions with pending answers")
