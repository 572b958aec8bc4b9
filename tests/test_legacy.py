"""The legacy folder: the debounce as pure logic on a fake clock, and reads that never modify a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mcp_cascade.receive import legacy
from mcp_cascade.receive.legacy import Debounce


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_due_only_after_a_whole_quiet_window() -> None:
    clock = FakeClock()
    debounce = Debounce(0.5, clock)
    debounce.touch("a")
    clock.now += 0.49
    assert debounce.due() == []
    clock.now += 0.01
    assert debounce.due() == ["a"]
    assert debounce.due() == []
    assert len(debounce) == 0


def test_every_touch_restarts_the_window_of_that_key_only() -> None:
    clock = FakeClock()
    debounce = Debounce(0.5, clock)
    debounce.touch("slow")
    debounce.touch("done")
    for _ in range(4):  # a writer adding a chunk every 0.3 s
        clock.now += 0.3
        debounce.touch("slow")
        assert "slow" not in debounce.due()
    assert debounce.next_due() == clock.now + 0.5
    clock.now += 0.5
    assert debounce.due() == ["slow"]


def test_due_keys_come_least_recently_touched_first() -> None:
    clock = FakeClock()
    debounce = Debounce(1.0, clock)
    debounce.touch("b", at=10.0)
    debounce.touch("a", at=20.0)
    debounce.touch("c", at=5.0)
    assert debounce.next_due() == 6.0
    assert debounce.due() == ["c", "b", "a"]


def test_a_touch_in_the_past_never_shortens_the_window() -> None:
    clock = FakeClock()
    debounce = Debounce(1.0, clock)
    debounce.touch("a")
    debounce.touch("a", at=clock.now - 50)
    clock.now += 0.9
    assert debounce.due() == []


def test_a_forgotten_key_never_becomes_due() -> None:
    clock = FakeClock()
    debounce = Debounce(0.1, clock)
    debounce.touch("a")
    debounce.forget("a")
    clock.now += 1
    assert debounce.due() == []
    assert debounce.next_due() is None


def _answer(folder: Path, name: str, data: dict[str, object]) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def test_listing_keeps_only_regular_legacy_answer_files(tmp_path: Path) -> None:
    good = _answer(tmp_path, "telegram_response_42_20261129_100000.json", {"message_text": "x"})
    _answer(tmp_path, "unrelated.json", {})
    (tmp_path / "telegram_callback_1_x.json").symlink_to(good)
    os.mkfifo(tmp_path / "telegram_callback_2_x.json")
    assert list(legacy.listing(tmp_path)) == [good.name]


def test_the_same_name_and_bytes_give_the_same_id_and_other_bytes_another(tmp_path: Path) -> None:
    data = {"timestamp": "2026-11-29T10:00:00", "user_id": 42, "callback_data": "opt:1"}
    name = "telegram_callback_42_20261129_100000.json"
    _answer(tmp_path, name, data)
    first = legacy.read_one(tmp_path, name)
    again = legacy.read_one(tmp_path, name)
    assert isinstance(first, legacy.LegacyFile) and isinstance(again, legacy.LegacyFile)
    assert first.response().id == again.response().id
    assert first.response().callback_data == "opt:1"
    _answer(tmp_path, name, {**data, "callback_data": "opt:2"})
    changed = legacy.read_one(tmp_path, name)
    assert isinstance(changed, legacy.LegacyFile)
    assert changed.response().id != first.response().id


def test_reading_leaves_the_file_exactly_as_it_was(tmp_path: Path) -> None:
    path = _answer(tmp_path, "telegram_response_1_a.json", {"user_id": 1, "message_text": "hi"})
    before = path.stat()
    assert isinstance(legacy.read_one(tmp_path, path.name), legacy.LegacyFile)
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
        before.st_mtime_ns,
        before.st_size,
        before.st_ino,
    )


def test_a_missing_file_is_left_out_and_a_fifo_is_unreadable_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "telegram_response_1_fifo.json")
    outcomes = legacy.read_many(tmp_path, ["telegram_response_1_gone.json", "telegram_response_1_fifo.json"])
    assert len(outcomes) == 1
    (unreadable,) = outcomes
    assert isinstance(unreadable, legacy.Unreadable)
    assert "fifo" in unreadable.reason
