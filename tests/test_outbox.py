"""The sender's outbox: durable before the cascade, locked while delivered, re-driven after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcp_cascade.durable import fsync_dir
from mcp_cascade.response import make_response
from mcp_cascade.send.outbox import CorruptEntry, Outbox


def test_an_entry_held_by_its_writer_cannot_be_claimed_by_anyone_else(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.ensure()
    response = make_response(type="message", user_id=1, text="hi", id="o:1")
    held = box.put(response, "s-1", "auto")
    other = Outbox(tmp_path / "outbox")  # another sender on the same home
    assert other.names() == [held.entry.name]
    assert other.claim(held.entry.name) is None
    held.release()
    claimed = other.claim(held.entry.name)
    assert claimed is not None
    assert claimed.entry.response == response
    assert claimed.entry.session == "s-1"
    assert claimed.entry.tier == "auto"
    claimed.done()
    assert other.names() == []


def test_a_rejected_entry_moves_to_failed_with_its_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.ensure()
    held = box.put(make_response(type="message", user_id=1, text="x", id="o:2"), "s-1", "file")
    held.reject("HTTP 422: $.text: too long")
    assert box.names() == []
    assert (box.failed / held.entry.name).exists()
    assert (box.failed / (held.entry.name + ".reason")).read_text() == "HTTP 422: $.text: too long\n"


def test_an_unreadable_entry_is_moved_aside_and_reported(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.ensure()
    (box.pending / "00000000000000000001-1-bad.json").write_text("{not json")
    with pytest.raises(CorruptEntry, match="unreadable"):
        box.claim("00000000000000000001-1-bad.json")
    assert box.names() == []
    assert (box.failed / "00000000000000000001-1-bad.json.reason").exists()


def test_an_entry_with_a_session_id_that_is_not_one_is_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.ensure()
    held = box.put(make_response(type="message", user_id=1, text="x", id="o:3"), "s-1", "auto")
    path = held.path
    held.release()
    path.write_text(path.read_text().replace('"session":"s-1"', '"session":"../../etc"'))
    with pytest.raises(CorruptEntry, match="bad session id"):
        box.claim(path.name)


def test_the_lock_dies_with_a_sigkilled_writer_and_the_entry_can_be_redriven(tmp_path: Path) -> None:
    root = tmp_path / "outbox"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mcp_cascade.send.outbox import Outbox\n"
        "from mcp_cascade.response import make_response\n"
        "box = Outbox(Path(sys.argv[1])); box.ensure()\n"
        "held = box.put(make_response(type='message', user_id=1, text='k', id='o:kill'), 's-1', 'auto')\n"
        "print(held.entry.name, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ)
    with subprocess.Popen(
        [sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE, env=env, text=True
    ) as child:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        box = Outbox(root)
        assert box.claim(name) is None  # the live writer holds it
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    claimed = box.claim(name)
    assert claimed is not None
    assert claimed.entry.response.id == "o:kill"
    claimed.release()


def test_stale_unlocked_temporary_files_are_cleaned_and_fresh_ones_kept(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.ensure()
    stale = box.tmp / "1-1-stale.json"
    fresh = box.tmp / "2-1-fresh.json"
    stale.write_text("{}")
    fresh.write_text("{}")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    box.ensure()
    assert not stale.exists()
    assert fresh.exists()


def test_entries_are_listed_oldest_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.ensure()
    for n in range(5):
        box.put(make_response(type="message", user_id=1, text=str(n), id=f"o:{n}"), "s-1", "auto").release()
    assert [e.response.id for e in box.entries()] == [f"o:{n}" for n in range(5)]


def test_a_batch_of_puts_syncs_the_folder_once_and_an_entry_that_cannot_be_written_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []

    def counting(path: Path) -> None:
        synced.append(path)
        fsync_dir(path)

    monkeypatch.setattr("mcp_cascade.send.outbox.fsync_dir", counting)

    class FullForOne(Outbox):  # the disk refuses one entry of the batch
        def _write(self, response, session, tier):  # type: ignore[no-untyped-def]
            if response.id == "b:2":
                raise OSError(28, "No space left on device")
            return super()._write(response, session, tier)

    box = FullForOne(tmp_path / "outbox")
    box.ensure()
    items = [
        (make_response(type="message", user_id=1, text=str(n), id=f"b:{n}"), "s-1", "auto") for n in range(5)
    ]
    results = box.put_many(items)  # type: ignore[arg-type]
    assert synced == [box.pending]
    assert isinstance(results[2], OSError)
    claims = [r for r in results if not isinstance(r, OSError)]
    assert [c.entry.response.id for c in claims] == ["b:0", "b:1", "b:3", "b:4"]
    other = Outbox(tmp_path / "outbox")
    assert sorted(other.names()) == sorted(c.entry.name for c in claims)
    assert all(other.claim(c.entry.name) is None for c in claims)  # each still locked by its writer
    assert list(box.tmp.iterdir()) == []
    for c in claims:
        c.done()
    assert other.names() == []
