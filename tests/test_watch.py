"""The watcher in-process, once per backend (inotify, watchfiles, poll): real files, store and engine.

The client is recorded at the Pusher seam.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_cascade.events import Event
from mcp_cascade.inbox import Maildir, enqueue, file_name
from mcp_cascade.receive.delivery import Engine
from mcp_cascade.receive.store import Store
from mcp_cascade.receive.watch import InboxWatcher
from mcp_cascade.response import Response, make_response
from mcp_cascade.watchers import BackendName

pytestmark = pytest.mark.anyio


# The kernel's default fs.inotify.max_queued_events; a flood past it forces IN_Q_OVERFLOW.
QUEUE_LIMIT = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


class Recorder:
    """The client side (what was pushed) and the observer (what was emitted), with waits on both."""

    def __init__(self) -> None:
        self.pushed: list[tuple[Response, int, bool]] = []
        self.events: list[Event] = []
        self._changed = anyio.Event()

    def _poke(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def push(self, response: Response, tier: int, *, redelivered: bool) -> None:
        self.pushed.append((response, tier, redelivered))
        self._poke()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self._poke()

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.event == name]

    def ids(self) -> list[str]:
        return [r.id for r, _, _ in self.pushed]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        with anyio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()


@dataclass
class Harness:
    maildir: Maildir
    store: Store
    watcher: InboxWatcher
    rec: Recorder


@asynccontextmanager
async def harness(tmp_path: Path, **options: Any) -> AsyncIterator[Harness]:
    rec = Recorder()
    store = Store.open(tmp_path / "state.db")
    engine = Engine(store, "sess-w", rec)
    maildir = Maildir(tmp_path / "inbox", "sess-w", settle_s=options.pop("settle_s", 0.5))
    watcher = InboxWatcher(maildir, engine, rec, **options)
    try:
        async with engine.running(), watcher.running():
            engine.attach(rec)
            yield Harness(maildir, store, watcher, rec)
    finally:
        store.close()


def drop(maildir: Maildir, item: Response) -> str:
    """The producer's steps without the fsyncs (durability is not what these tests are about)."""
    name = file_name(item)
    (maildir.tmp / name).write_bytes(item.to_json())
    (maildir.tmp / name).rename(maildir.new / name)
    return name


def response(n: int) -> Response:
    return make_response(type="message", user_id=1, text=f"answer {n}", id=f"w:{n}")


async def test_a_flood_past_the_kernel_queue_reports_the_overflow_and_loses_nothing(tmp_path: Path) -> None:
    count = 300
    async with harness(tmp_path, rescan_s=60, watcher="inotify") as h:
        await h.rec.wait_for(lambda: bool(h.rec.named("rescan")))
        # No await from here on: the watcher cannot read while the kernel queue fills past its limit.
        names = [drop(h.maildir, response(n)) for n in range(count)]
        for i in range(QUEUE_LIMIT + 100):
            fd = os.open(h.maildir.new / names[i % 2], os.O_WRONLY)  # one IN_CLOSE_WRITE each
            os.close(fd)

        await h.rec.wait_for(lambda: any(e.reason == "overflow" for e in h.rec.named("rescan")))

        assert h.rec.named("inotify_overflow")
        assert h.watcher.health()["overflows"] >= 1
        assert h.rec.ids() == [f"w:{n}" for n in range(count)]
        assert {tier for _, tier, _ in h.rec.pushed} == {3}
        assert list(h.maildir.new.iterdir()) == []
        assert list(h.maildir.cur.iterdir()) == []


async def test_a_renamed_file_is_delivered_by_the_wake_up_alone_without_a_rescan(
    tmp_path: Path, backend: BackendName
) -> None:
    async with harness(tmp_path, rescan_s=60, watcher=backend) as h:
        await h.rec.wait_for(lambda: bool(h.rec.named("rescan")))
        assert h.watcher.health()["watcher"] == backend
        for n in range(3):
            enqueue(h.maildir.root, response(n))
            await h.rec.wait_for(lambda n=n: len(h.rec.pushed) == n + 1)  # type: ignore[misc]
        assert h.rec.ids() == ["w:0", "w:1", "w:2"]
        assert len(h.rec.named("rescan")) == 1  # the start-up scan only: every delivery was a wake-up


async def test_a_file_the_store_refuses_stays_claimed_then_is_delivered_once_it_recovers(
    tmp_path: Path, backend: BackendName
) -> None:
    async with harness(tmp_path, rescan_s=0.05, watcher=backend) as h:
        await h.rec.wait_for(lambda: bool(h.rec.named("rescan")))
        h.store._db.execute("PRAGMA query_only = 1")  # every write now fails: "readonly database"
        enqueue(h.maildir.root, response(1))
        await h.rec.wait_for(lambda: h.watcher.health()["stalled"] == 1)
        assert h.watcher.health()["status"] == "degraded"
        assert any("store" in (e.reason or "") for e in h.rec.named("failed"))
        on_disk = list(h.maildir.cur.iterdir()) + list(h.maildir.new.iterdir())
        assert len(on_disk) == 1  # kept, never deleted

        h.store._db.execute("PRAGMA query_only = 0")
        await h.rec.wait_for(lambda: len(h.rec.pushed) == 1)
        await h.rec.wait_for(lambda: h.watcher.health()["stalled"] == 0)
        assert h.rec.ids() == ["w:1"]
        await h.rec.wait_for(lambda: not any(h.maildir.cur.iterdir()))


async def test_a_file_being_written_in_place_waits_and_never_blocks_the_next(
    tmp_path: Path, backend: BackendName
) -> None:
    async with harness(tmp_path, rescan_s=60, settle_s=60, watcher=backend) as h:
        await h.rec.wait_for(lambda: bool(h.rec.named("rescan")))
        early = response(1)
        path = h.maildir.new / file_name(early)
        data = early.to_json()
        with path.open("wb") as writer:
            writer.write(data[:10])
            writer.flush()
            enqueue(h.maildir.root, response(2))  # wakes the watcher while the first is half written
            await h.rec.wait_for(lambda: h.rec.ids() == ["w:2"])
            assert path.exists()
            writer.write(data[10:])
        # The close is the writer's IN_CLOSE_WRITE: delivered now, not after the 60 s settle time.
        await h.rec.wait_for(lambda: h.rec.ids() == ["w:2", "w:1"])
        assert list(h.maildir.failed.iterdir()) == []


async def test_a_removed_inbox_is_recreated_and_watched_again(tmp_path: Path, backend: BackendName) -> None:
    async with harness(tmp_path, rescan_s=0.05, watcher=backend) as h:
        await h.rec.wait_for(lambda: bool(h.rec.named("rescan")))
        shutil.rmtree(h.maildir.root)
        await h.rec.wait_for(lambda: any("removed" in (e.reason or "") for e in h.rec.named("watch_error")))
        await h.rec.wait_for(lambda: h.watcher.health()["watch_armed"])
        enqueue(h.maildir.root, response(1))
        await h.rec.wait_for(lambda: h.rec.ids() == ["w:1"])


async def test_health_reports_the_live_state_of_the_file_tier(tmp_path: Path, backend: BackendName) -> None:
    async with harness(tmp_path, rescan_s=0.05, watcher=backend) as h:
        (h.maildir.new / "01-bad.json").write_bytes(b"{}")
        await h.rec.wait_for(lambda: bool(h.rec.named("rejected")))
        await h.rec.wait_for(lambda: len(h.rec.named("rescan")) >= 3)
        health = h.watcher.health()
        assert health["status"] == "ok"
        assert health["watcher_alive"] and health["watch_armed"] and health["inbox_writable"]
        assert health["watcher"] == backend
        assert health["watcher_reason"] == f"watcher = {backend!r} in the configuration"
        assert health["failed"] == 1
        assert health["pending_new"] == 0
        assert health["last_rescan_age_s"] is not None and health["last_rescan_age_s"] < 5
    assert h.watcher.health()["status"] == "down"
    assert not h.watcher.health()["watcher_alive"]


async def test_when_inotify_cannot_start_the_next_backend_takes_over_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(**_: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr("inotify_simple.INotify", exhausted)
    async with harness(tmp_path, rescan_s=60) as h:
        await h.rec.wait_for(lambda: bool(h.rec.named("rescan")))
        (chosen,) = h.rec.named("watcher_chosen")
        assert chosen.level == "warning" and chosen.fields["watcher"] == "watchfiles"
        assert chosen.reason == (
            "auto: inotify is the Linux default;"
            " inotify unavailable (OSError: [Errno 24] Too many open files)"
        )
        enqueue(h.maildir.root, response(1))
        await h.rec.wait_for(lambda: h.rec.ids() == ["w:1"])
        health = h.watcher.health()
        assert (health["watcher"], health["watch_armed"], health["status"]) == ("watchfiles", True, "ok")
        assert health["watcher_reason"] == chosen.reason


async def test_a_legacy_folder_created_after_start_is_picked_up_and_only_read(
    tmp_path: Path, backend: BackendName
) -> None:
    folder = tmp_path / "responses"
    async with harness(tmp_path, rescan_s=0.05, legacy_dir=folder, debounce_s=0.05, watcher=backend) as h:
        await h.rec.wait_for(lambda: any("legacy" in (e.reason or "") for e in h.rec.named("watch_error")))
        assert h.watcher.health()["status"] == "degraded"
        folder.mkdir()
        answer = folder / "telegram_callback_42_20261129_100000.json"
        answer.write_text(
            json.dumps({"timestamp": "2026-11-29T10:00:00", "user_id": 42, "callback_data": "ok"})
        )
        before = answer.stat()
        await h.rec.wait_for(lambda: len(h.rec.pushed) == 1)
        ((pushed, tier, _),) = h.rec.pushed
        assert (pushed.type, pushed.callback_data, tier) == ("callback", "ok", 3)
        assert pushed.id.startswith("legacy:")
        await h.rec.wait_for(lambda: h.watcher.health()["status"] == "ok")
        assert answer.stat().st_mtime_ns == before.st_mtime_ns
        assert sorted(p.name for p in folder.iterdir()) == [answer.name]
