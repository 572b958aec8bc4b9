"""The maildir's file operations on real directories: claim, ack, fail with a reason, recover."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mcp_cascade.inbox import (
    Claimed,
    Failed,
    Gone,
    Maildir,
    Unsettled,
    enqueue,
    ensure_inbox,
    sort_key,
)
from mcp_cascade.response import make_response
from mcp_cascade.validation import MAX_BODY_BYTES
from tests.helpers import body, encode

NAME = "01795000000000000000-tg_1_2.json"


@pytest.fixture
def box(tmp_path: Path) -> Maildir:
    root = tmp_path / "inbox"
    ensure_inbox(root)
    return Maildir(root, "sess-a", settle_s=0.5)


def put(box: Maildir, name: str, data: bytes, *, age_s: float = 10.0) -> Path:
    """A file in new/ last modified ``age_s`` ago."""
    path = box.new / name
    path.write_bytes(data)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def reason_of(box: Maildir, name: str) -> str:
    return (box.failed / f"{name}.reason").read_text()


def test_an_enqueued_response_is_claimed_into_cur_and_removed_by_ack(box: Maildir) -> None:
    response = make_response(type="message", user_id=7, text="hello", id="tg:7:1")
    done = enqueue(box.root, response)
    assert done.path.parent == box.new
    assert oct(done.path.stat().st_mode & 0o777) == "0o600"
    assert list(box.tmp.iterdir()) == []

    taken = box.take(done.path.name)

    assert isinstance(taken, Claimed)
    assert taken.response == response
    assert (box.cur / done.path.name).exists()
    assert not done.path.exists()
    box.ack([done.path.name])
    assert list(box.cur.iterdir()) == []


def test_scan_orders_padded_and_unpadded_time_prefixes_by_their_value(box: Maildir) -> None:
    names = ["1795000000000000002-b.json", "01795000000000000001-a.json", "01795000000000000003-c.json"]
    for name in names:
        put(box, name, b"{}")
    assert box.scan() == [
        "01795000000000000001-a.json",
        "1795000000000000002-b.json",
        "01795000000000000003-c.json",
    ]
    assert sort_key("notes.txt") < sort_key("1-a.json")


def _bad_entries(box: Maildir, tmp_path: Path) -> dict[str, str]:
    """Create one entry per kind of bad input; return name → a word its reason must contain."""
    target = tmp_path / "elsewhere.json"
    target.write_bytes(encode(body(id="secret:1")))
    cases = {
        "01-not-json.json": ("data", b'{"id": "x", '),
        "02-schema.json": ("data", encode({"id": "x", "type": "message"})),
        "03-huge.json": ("data", encode(body(id="big", text="x" * (MAX_BODY_BYTES + 10)))),
        "04-empty.json": ("data", b""),
        "05-other-session.json": ("data", encode(body(id="o:1", session="sess-b"))),
        "notes.txt": ("data", encode(body(id="n:1"))),
    }
    expect = {
        "01-not-json.json": "malformed",
        "02-schema.json": "schema",
        "03-huge.json": "limit",
        "04-empty.json": "empty",
        "05-other-session.json": "sess-b",
        "notes.txt": "name",
    }
    for name, (_, data) in cases.items():
        put(box, name, data)
    (box.new / "06-link.json").symlink_to(target)
    expect["06-link.json"] = "symlink"
    os.mkfifo(box.new / "07-fifo.json")
    expect["07-fifo.json"] = "fifo"
    (box.new / "08-dir.json").mkdir()
    expect["08-dir.json"] = "directory"
    return expect


def test_every_kind_of_bad_entry_moves_to_failed_with_its_reason(box: Maildir, tmp_path: Path) -> None:
    expect = _bad_entries(box, tmp_path)
    target_before = (tmp_path / "elsewhere.json").read_bytes()

    results = {name: box.take(name) for name in box.scan()}

    for name, word in expect.items():
        result = results[name]
        assert isinstance(result, Failed), (name, result)
        assert result.moved
        assert word in result.reason, (name, result.reason)
        assert word in reason_of(box, name)
        assert os.path.lexists(box.failed / name)
    assert list(box.new.iterdir()) == []
    assert list(box.cur.iterdir()) == []
    # The symlink itself moved; what it pointed at was neither followed nor touched.
    assert (box.failed / "06-link.json").is_symlink()
    assert (tmp_path / "elsewhere.json").read_bytes() == target_before
    assert box.failed_count() == len(expect)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files (covered end to end without caps)")
def test_an_unreadable_file_moves_to_failed(box: Maildir) -> None:
    path = put(box, NAME, encode(body()))
    path.chmod(0)
    result = box.take(NAME)
    assert isinstance(result, Failed)
    assert "cannot be read" in result.reason


def test_a_fresh_file_that_is_not_json_yet_waits_then_fails_once_settled(box: Maildir) -> None:
    put(box, NAME, b'{"id": "half', age_s=0.0)
    first = box.take(NAME)
    assert isinstance(first, Unsettled)
    assert (box.new / NAME).exists()
    assert first.settles_at > time.time()

    later = box.take(NAME, now=first.settles_at + 0.01)
    assert isinstance(later, Failed)
    assert "malformed" in later.reason


def test_a_fresh_file_with_valid_json_is_claimed_at_once(box: Maildir) -> None:
    put(box, NAME, encode(body(id="now:1")), age_s=0.0)
    assert isinstance(box.take(NAME), Claimed)


def test_a_schema_violation_fails_at_once_even_when_fresh(box: Maildir) -> None:
    put(box, NAME, encode({"id": "x"}), age_s=0.0)
    assert isinstance(box.take(NAME), Failed)


def test_an_entry_that_vanished_is_gone(box: Maildir) -> None:
    assert isinstance(box.take(NAME), Gone)


def test_an_entry_that_cannot_be_moved_is_left_in_place_and_says_so(box: Maildir) -> None:
    put(box, NAME, b"not json")
    box.failed.rmdir()
    box.failed.write_bytes(b"")  # failed/ is a file now: every move into it fails

    result = box.take(NAME)

    assert isinstance(result, Failed)
    assert not result.moved
    assert "left in place" in result.reason
    assert (box.new / NAME).exists()


def test_a_second_failure_of_the_same_name_keeps_both_files(box: Maildir) -> None:
    put(box, NAME, b"first")
    assert isinstance(box.take(NAME), Failed)
    put(box, NAME, b"second")
    assert isinstance(box.take(NAME), Failed)
    kept = sorted(p.read_bytes() for p in box.failed.iterdir() if not p.name.endswith(".reason"))
    assert kept == [b"first", b"second"]
    assert box.failed_count() == 2


def test_recovery_puts_claimed_files_back_and_removes_only_stale_tmp_files(box: Maildir) -> None:
    (box.cur / NAME).write_bytes(encode(body()))
    stale = box.tmp / "old.json"
    fresh = box.tmp / "writing.json"
    stale.write_bytes(b"{")
    fresh.write_bytes(b"{")
    hours_ago = time.time() - 7200
    os.utime(stale, (hours_ago, hours_ago))

    recovery = box.recover()

    assert recovery.requeued == (NAME,)
    assert recovery.removed_tmp == ("old.json",)
    assert (box.new / NAME).exists()
    assert not stale.exists()
    assert fresh.exists()


def test_requeue_returns_claimed_files_to_new(box: Maildir) -> None:
    put(box, NAME, encode(body()))
    assert isinstance(box.take(NAME), Claimed)
    box.requeue([NAME])
    assert box.scan() == [NAME]
    assert json.loads((box.new / NAME).read_bytes())["type"] == "message"
