"""Tier 3 end to end, the legacy folder (DESIGN 7): files written in place, once per watcher backend."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import from_dict
from mcp_cascade.testing import ServeProcess
from tests.helpers import body
from tests.tier3 import (  # noqa: F401 - forced_backend is an autouse fixture
    FAST,
    forced_backend,
    hand_write,
    ids,
    inbox_of,
)

pytestmark = pytest.mark.anyio


SLOW_WRITER = textwrap.dedent(
    """\
    import sys, time
    path, pause = sys.argv[1], float(sys.argv[2])
    data = sys.stdin.buffer.read()
    chunks = [data[i : i + 1 + len(data) // 4] for i in range(0, len(data), 1 + len(data) // 4)]
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
            time.sleep(pause)
    """
)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


async def test_legacy_files_written_slowly_in_place_are_delivered_once_complete_and_left_untouched(
    home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "cctelegram-responses"
    folder.mkdir()
    (folder / "telegram_response_42_20261129_095900.json").write_text("{broken")
    (folder / "README.txt").write_text("not an answer")
    args = ["--legacy-dir", str(folder), "--file-debounce-ms", "400", *FAST]
    text = "a long answer " * 40
    response_file = folder / "telegram_response_42_20261129_100000.json"
    callback_file = folder / "telegram_callback_42_20261129_100001.json"
    async with ServeProcess(home, "file-l", args=args) as serve:
        await serve.wait_session()
        await serve.initialize()
        for path, data in (
            (response_file, {"timestamp": "2026-11-29T10:00:00", "user_id": 42, "message_text": text}),
            (callback_file, {"timestamp": "2026-11-29T10:00:01", "user_id": 42, "callback_data": "opt:2"}),
        ):
            writer = await anyio.run_process(
                [sys.executable, "-c", SLOW_WRITER, str(path), "0.08"], input=json.dumps(data).encode()
            )
            assert writer.returncode == 0
        before = snapshot(folder)
        notes = await serve.wait_channel(2)
        assert [n["params"]["content"] for n in notes] == [text, "opt:2"]
        assert {n["params"]["meta"]["tier"] for n in notes} == {"3"}
        assert all(n["params"]["meta"]["source"] == "legacy" for n in notes)
        legacy_ids = [n["params"]["meta"]["response_id"] for n in notes]

        # Restarted: the same files are known by their derived ids, and not pushed again.
        serve.kill(signal.SIGTERM)
        await serve.wait_exit()
        await serve.start()
        await serve.wait_session()
        await serve.initialize()
        enqueue(inbox_of(home, "file-l"), from_dict(body(id="l:marker", text="marker")))
        await serve.wait_for(lambda: "l:marker" in ids(serve))
        assert ids(serve) == [*legacy_ids, "l:marker"]
    assert snapshot(folder) == before


async def test_the_legacy_debounce_never_holds_a_file_delivered_atomically_into_the_inbox(
    home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "legacy"
    folder.mkdir()
    # A one-minute quiet window for legacy files; the inbox file must not wait for it.
    args = ["--legacy-dir", str(folder), "--file-debounce-ms", "60000"]
    async with ServeProcess(home, "file-m", args=args) as serve:
        await serve.wait_session()
        await serve.initialize()
        await hand_write(inbox_of(home, "file-m"), "m_1", body(id="m:1", text="straight through"))
        (note,) = await serve.wait_channel(1, timeout=10)
        assert note["params"]["content"] == "straight through"
