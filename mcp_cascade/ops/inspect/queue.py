"""``inspect queue``: what waits in a session (store and inbox), what failed and why; ``--retry``.

Beside the sessions' queues: the bridge's dead letters, Telegram updates it set aside for good.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mcp_cascade.bridge.outbox import DEAD_LETTER, OUTBOX_DB, UpdateOutbox
from mcp_cascade.durable import fsync_dir, pid_alive
from mcp_cascade.errors import CascadeError, StoreUnavailable
from mcp_cascade.events import Event
from mcp_cascade.ops.audit import AUDIT_FILE, AuditTrail
from mcp_cascade.receive.store import Store
from mcp_cascade.sessions import SessionPaths, list_sessions, read_session

Where = Literal["store", "store/quarantined", "inbox/new", "inbox/failed", "bridge/dead-letter"]


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One response (or file) not delivered yet, or refused."""

    session: str
    where: Where
    id: str
    file: str | None
    correlation_id: str | None
    tier: int | None
    state: str
    age_s: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return asdict(self)


def list_queue(home: Path, session: str | None = None, now: float | None = None) -> list[QueueItem]:
    """Pending store rows, waiting inbox files and failed inbox files of one session or all, oldest first."""
    now = time.time() if now is None else now
    names = [session] if session else [name for name, _ in list_sessions(home)]
    items: list[QueueItem] = []
    for name in names:
        paths = SessionPaths(home, name)
        if not paths.dir.is_dir():
            raise CascadeError(f"no session {name!r} under {home}/sessions")
        running = _running(home, name)
        items.extend(_store_items(paths, running, now))
        items.extend(_inbox_items(paths, running, now))
    items.extend(i for i in _dead_letters(home, now) if session in (None, i.session))
    return sorted(items, key=lambda i: -i.age_s)


def _dead_letters(home: Path, now: float) -> list[QueueItem]:
    """Updates the bridge set aside for content of their own (its outbox keeps them for its retention)."""
    path = home / OUTBOX_DB
    if not path.exists():
        return []
    try:
        outbox = UpdateOutbox.open_readonly(path)
    except StoreUnavailable:
        return []
    try:
        entries = outbox.dead_letters()
    finally:
        outbox.close()
    return [
        QueueItem(
            e.session or "-",
            "bridge/dead-letter",
            f"update:{e.update_id}",
            None,
            None,
            2,
            "dead letter",
            round(now - e.received_at, 3),
            (e.note or "")[len(DEAD_LETTER) :],
        )
        for e in entries
    ]


def _running(home: Path, session: str) -> bool:
    info = read_session(home, session)
    return info is not None and pid_alive(info.pid)


def _store_items(paths: SessionPaths, running: bool, now: float) -> list[QueueItem]:
    try:
        store = Store.open_readonly(paths.state_db)
    except StoreUnavailable:
        return []
    try:
        rows = store.pending()
        set_aside = store.quarantined()
    finally:
        store.close()
    waiting = "waiting to be pushed to the MCP client" if running else "the session is not running"
    return [
        QueueItem(
            paths.session,
            "store",
            row.response.id,
            None,
            row.response.correlation_id,
            row.tier,
            row.state,
            round(now - row.received_at, 3),
            "caught mid-push by a crash; pushed again, flagged redelivered"
            if row.state == "pushing"
            else waiting,
        )
        for row in rows
    ] + [
        QueueItem(
            paths.session,
            "store/quarantined",
            row.id,
            None,
            None,
            row.tier or None,
            "quarantined",
            round(now - row.at, 3),
            row.reason,
        )
        for row in set_aside
    ]


def _inbox_items(paths: SessionPaths, running: bool, now: float) -> list[QueueItem]:
    items: list[QueueItem] = []
    waiting = "waiting for the inbox watcher" if running else "the session is not running"
    for sub, state in (("new", "waiting"), ("failed", "failed")):
        for path in _json_files(paths.inbox / sub):
            data = _peek(path)
            reason = _reason(path) if state == "failed" else waiting
            items.append(
                QueueItem(
                    paths.session,
                    "inbox/new" if sub == "new" else "inbox/failed",
                    str(data.get("id") or path.stem),
                    path.name,
                    data.get("correlation_id") if isinstance(data.get("correlation_id"), str) else None,
                    3,
                    state,
                    round(now - _written_at(path), 3),
                    reason,
                )
            )
    return items


def _json_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and not p.is_symlink())
    except OSError:
        return []


def _peek(path: Path) -> dict[str, Any]:
    """The file's JSON object, or {} when it is not one (that is often why it failed)."""
    try:
        with path.open("rb") as fh:
            data = json.loads(fh.read(70_000))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _reason_file(path: Path) -> Path:
    """``<name>.reason`` beside ``<name>.json`` (or ``<name>.json.reason``, whichever exists)."""
    plain = path.with_suffix(".reason")
    return plain if plain.exists() else path.with_name(path.name + ".reason")


def _reason(path: Path) -> str:
    try:
        return _reason_file(path).read_text(encoding="utf-8", errors="replace").strip()[:500]
    except OSError:
        return "no reason recorded"


def _written_at(path: Path) -> float:
    """When the producer wrote it: the ``<time_ns>-`` prefix of its name, else its mtime."""
    stamp = path.name.split("-", 1)[0]
    if stamp.isdigit() and len(stamp) >= 19:
        return int(stamp) / 1e9
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def retry(home: Path, key: str, session: str | None, audit_max_bytes: int) -> QueueItem:
    """Move the failed inbox file named (or carrying the id) ``key`` back into ``inbox/new``.

    The move is a link into new/ (never replacing a file there) and an unlink
    from failed/, each directory fsynced; the reason file goes with it.
    """
    matches = [
        item
        for item in list_queue(home, session)
        if item.where == "inbox/failed" and key in (item.id, item.file, Path(item.file or "").stem)
    ]
    if not matches:
        raise CascadeError(f"no failed inbox item {key!r} (see: mcp-cascade inspect queue)")
    if len(matches) > 1:
        where = ", ".join(f"{m.session}/{m.file}" for m in matches)
        raise CascadeError(f"{key!r} matches several failed items ({where}); give the session or file name")
    item = matches[0]
    assert item.file is not None
    inbox = SessionPaths(home, item.session).inbox
    source, target = inbox / "failed" / item.file, inbox / "new" / item.file
    reason_file = _reason_file(source)
    os.link(source, target)
    fsync_dir(target.parent)
    source.unlink()
    reason_file.unlink(missing_ok=True)
    fsync_dir(source.parent)
    trail = AuditTrail(home / AUDIT_FILE, audit_max_bytes, "inspect")
    trail.write(
        Event(
            "retried",
            tier=3,
            response_id=item.id,
            correlation_id=item.correlation_id,
            session=item.session,
            reason=f"moved back into inbox/new by inspect queue --retry (it had failed: {item.reason})",
        )
    )
    trail.close()
    return item
