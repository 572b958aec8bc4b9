"""Tier 3 end to end: files in the inbox (and a legacy folder) become channel notifications of serve.

Every test runs once per watcher backend (inotify, watchfiles, poll), forced
through ``MCP_CASCADE_WATCHER`` in serve's environment. Producers are separate
processes (a shell script following DESIGN 6 by hand, a Python loop calling
``enqueue``, a slow in-place writer); serve is a real subprocess, killed with
SIGKILL where a crash is what is being tested.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import MAX_BODY_BYTES, from_dict
from mcp_cascade.store import Store
from mcp_cascade.testing import ServeProcess
from mcp_cascade.watchers import BackendName
from tests.helpers import body, encode, sign

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def forced_backend(backend: BackendName, monkeypatch: pytest.MonkeyPatch) -> BackendName:
    """serve (a child of this process) takes the backend from its environment."""
    monkeypatch.setenv("MCP_CASCADE_WATCHER", backend)
    return backend


FAST = ["--file-rescan-ms", "100"]
# DESIGN 6 by hand, in sh: O_EXCL (noclobber) 0600 (umask) in tmp/, fsync, rename into new/, fsync new/.
HAND_PRODUCER = textwrap.dedent(
    """\
    set -eu
    umask 077
    set -C
    name="$(date +%s%N)-$2.json"
    cat > "$1/tmp/$name"
    sync "$1/tmp/$name"
    mv "$1/tmp/$name" "$1/new/$name"
    sync "$1/new"
    """
)


def inbox_of(home: Path, session: str) -> Path:
    return home / "sessions" / session / "inbox"


async def hand_write(inbox: Path, safe_id: str, data: dict[str, Any]) -> None:
    """Deliver one response the way any program may: a separate process following DESIGN 6."""
    for sub in ("tmp", "new"):
        (inbox / sub).mkdir(parents=True, exist_ok=True)
    done = await anyio.run_process(["sh", "-c", HAND_PRODUCER, "sh", str(inbox), safe_id], input=encode(data))
    assert done.returncode == 0, done.stderr


def contents(serve: ServeProcess) -> list[str]:
    return [n["params"]["content"] for n in serve.channel()]


def ids(serve: ServeProcess) -> list[str]:
    return [n["params"]["meta"]["response_id"] for n in serve.channel()]


def leftovers(inbox: Path) -> list[str]:
    return sorted(p.name for sub in ("new", "cur", "tmp") for p in (inbox / sub).iterdir())


async def drained(inbox: Path, timeout: float = 10.0) -> bool:
    """Wait until new/, cur/ and tmp/ are empty (a claimed file is removed just after its push)."""
    with anyio.fail_after(timeout):
        while leftovers(inbox):  # noqa: ASYNC110 - a directory listing has no event to wait on
            await anyio.sleep(0.01)
    return True


async def restart_then_mark(serve: ServeProcess, inbox: Path, marker_id: str) -> None:
    """Start serve again as Claude Code would, drop a marker file, and wait for two notifications."""
    await serve.start()
    await serve.wait_session()
    await serve.initialize()
    enqueue(inbox, from_dict(body(id=marker_id, text="marker")))
    await serve.wait_channel(2)


async def recorded_delivered(home: Path, session: str, rid: str, timeout: float = 10.0) -> None:
    """Wait until the store records ``rid`` as delivered (it does so just after the frame is written)."""

    def state() -> str | None:
        store = Store(home / "sessions" / session / "state.db")
        try:
            rows = store.find(rid)
        finally:
            store.close()
        return rows[0].state if rows else None

    with anyio.fail_after(timeout):
        while await anyio.to_thread.run_sync(state) != "delivered":  # noqa: ASYNC110 - another process's db
            await anyio.sleep(0.01)


def lexists(path: Path) -> bool:
    return os.path.lexists(path)


async def test_a_file_written_by_hand_in_another_process_becomes_a_tier_3_notification(
    home: Path, backend: BackendName
) -> None:
    async with ServeProcess(home, "file-a") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        inbox = inbox_of(home, "file-a")
        await hand_write(inbox, "tg_4242_9", body(id="tg:4242:9", text="deploy it"))

        (note,) = await serve.wait_channel(1)

        assert note["method"] == "notifications/claude/channel"
        assert note["params"]["content"] == "deploy it"
        meta = note["params"]["meta"]
        assert meta["tier"] == "3"
        assert meta["response_id"] == "tg:4242:9"
        assert meta["user"] == "@alice"
        assert "redelivered" not in meta
        async with httpx.AsyncClient() as client:
            health = (await client.get(info.health_url.replace("/health", "/health/file"))).json()
        assert health["status"] == "ok"
        assert health["watcher_alive"] and health["watch_armed"] and health["inbox_writable"]
        assert health["watcher"] == backend
        assert await drained(inbox)
    assert serve.bad_lines == []


async def test_files_written_while_no_server_runs_are_delivered_in_order_at_start(home: Path) -> None:
    inbox = inbox_of(home, "file-b")
    for n in range(12):
        if n % 3 == 0:
            await hand_write(inbox, f"early_{n}", body(id=f"early:{n}", text=f"answer {n}"))
        else:
            enqueue(inbox, from_dict(body(id=f"early:{n}", text=f"answer {n}")))
    async with ServeProcess(home, "file-b") as serve:
        await serve.wait_session()
        await serve.initialize()
        await serve.wait_channel(12)
        assert contents(serve) == [f"answer {n}" for n in range(12)]
        assert await drained(inbox)


async def test_a_claimed_file_left_by_a_kill_before_the_store_saw_it_is_delivered_once(home: Path) -> None:
    inbox = inbox_of(home, "file-c")
    async with ServeProcess(home, "file-c") as serve:
        await serve.wait_session()
        serve.kill()
        await serve.wait_exit()
        # The state a SIGKILL leaves right after the claim: the file in cur/, nothing in the store.
        claimed = enqueue(inbox, from_dict(body(id="c:1", text="claimed then killed")))
        claimed.path.rename(inbox / "cur" / claimed.path.name)
        await restart_then_mark(serve, inbox, "c:marker")
        assert contents(serve) == ["claimed then killed", "marker"]
        assert await drained(inbox)


async def test_a_sigkill_between_claim_and_push_redelivers_once_not_twice(home: Path) -> None:
    inbox = inbox_of(home, "file-d")
    async with ServeProcess(home, "file-d") as serve:
        await serve.wait_session()
        # No client yet: the response becomes durable in the store (queued) and its file is removed.
        data = body(id="d:1", text="only once")
        done = enqueue(inbox, from_dict(data))
        await drained(inbox)  # removed only once receive returned: durable in the store
        serve.kill()
        await serve.wait_exit()
        # Killed before the push, and before the claimed file was removed: put it back in cur/.
        (inbox / "cur" / done.path.name).write_bytes(encode(data))
        await restart_then_mark(serve, inbox, "d:marker")
        assert contents(serve) == ["only once", "marker"]
        assert await drained(inbox)


async def test_a_file_for_a_response_already_delivered_is_removed_without_a_second_push(home: Path) -> None:
    inbox = inbox_of(home, "file-e")
    async with ServeProcess(home, "file-e") as serve:
        await serve.wait_session()
        await serve.initialize()
        data = body(id="e:1", text="delivered")
        done = enqueue(inbox, from_dict(data))
        await serve.wait_channel(1)
        await drained(inbox)  # removed once receive returned: durable in the store
        await recorded_delivered(home, "file-e", "e:1")
        serve.kill()
        await serve.wait_exit()
        # Killed after the push but before the unlink: the claimed file is still in cur/.
        (inbox / "cur" / done.path.name).write_bytes(encode(data))
        await restart_then_mark(serve, inbox, "e:marker")
        assert contents(serve) == ["delivered", "marker"]
        assert await drained(inbox)


def _without_dac_override(serve: ServeProcess) -> None:
    """Root reads mode-000 files; drop that capability so an unreadable file is unreadable to serve."""
    if os.geteuid() != 0:
        return
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv cannot make a file unreadable to serve")
    drop = "-dac_override,-dac_read_search"
    plain = serve.command
    serve.command = lambda: ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *plain()]  # type: ignore[method-assign]


async def test_every_bad_file_goes_to_failed_with_a_reason_and_the_next_good_file_is_delivered(
    home: Path, tmp_path: Path
) -> None:
    session = "file-f"
    inbox = inbox_of(home, session)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(encode(body(id="secret:1", text="never read through a link")))
    # Settling 0 ms: a fresh file that is not JSON fails at once, so order alone says when it was handled.
    serve = ServeProcess(home, session, args=[*FAST, "--file-debounce-ms", "0"])
    _without_dac_override(serve)
    bad: dict[str, tuple[str, str]] = {}

    def write(name: str, data: bytes) -> Path:
        path = inbox / "new" / name
        path.write_bytes(data)
        return path

    # label → how to make it in new/, and a word its .reason must contain
    makers: dict[str, tuple[Callable[[str], object], str]] = {
        "invalid JSON": (lambda n: write(n, b'{"id": "x", "type": '), "malformed"),
        "schema violation": (
            lambda n: write(n, encode({"id": "x", "type": "message", "user": {}})),
            "schema",
        ),
        "over 64 KiB": (lambda n: write(n, encode(body(id="big", text="x" * MAX_BODY_BYTES))), "limit"),
        "zero bytes": (lambda n: write(n, b""), "empty"),
        "symlink": (lambda n: (inbox / "new" / n).symlink_to(elsewhere), "symlink"),
        "fifo": (lambda n: os.mkfifo(inbox / "new" / n), "fifo"),
        "directory": (lambda n: (inbox / "new" / n).mkdir(), "directory"),
        "unreadable": (lambda n: write(n, encode(body(id="locked"))).chmod(0), "cannot be read"),
        "other session": (lambda n: write(n, encode(body(id="o:1", session="someone-else"))), "someone-else"),
    }
    async with serve:
        await serve.wait_session()
        await serve.initialize()
        for good, (label, (make, word)) in enumerate(makers.items()):
            name = f"{time.time_ns()}-bad{good}.json"
            make(name)
            bad[name] = (label, word)
            enqueue(inbox, from_dict(body(id=f"good:{good}", text=f"good {good}")))
        (inbox / "new" / "notes.txt").write_bytes(encode(body(id="n:1")))
        bad["notes.txt"] = ("foreign name", "name")
        enqueue(inbox, from_dict(body(id="good:last", text="good last")))

        await serve.wait_channel(len(makers) + 1)

        assert contents(serve) == [f"good {n}" for n in range(len(makers))] + ["good last"]
        failed = inbox / "failed"
        for name, (label, word) in bad.items():
            assert lexists(failed / name), label
            assert word in (failed / f"{name}.reason").read_text(), label
        assert elsewhere.exists()
        assert await drained(inbox)
        info = await serve.wait_session()
        async with httpx.AsyncClient() as client:
            health = (await client.get(info.health_url.replace("/health", "/health/file"))).json()
        assert health["failed"] == len(bad)
        assert health["status"] == "ok"
    assert serve.bad_lines == []


async def _post(url: str, secret: str, data: dict[str, Any]) -> httpx.Response:
    raw = encode(data)
    async with httpx.AsyncClient() as client:
        return await client.post(url, content=raw, headers=sign(secret, data["id"], raw))


async def test_the_same_id_by_webhook_and_by_file_in_either_order_or_at_once_is_pushed_once(
    home: Path,
) -> None:
    session = "file-g"
    inbox = inbox_of(home, session)
    async with ServeProcess(home, session) as serve:
        info = await serve.wait_session()
        await serve.initialize()
        secret = (home / "secret").read_text().strip()

        first = body(id="both:webhook-first", text="webhook first")
        assert (await _post(info.webhook_url, secret, first)).json()["status"] == "delivered"
        enqueue(inbox, from_dict(first))

        second = body(id="both:file-first", text="file first")
        enqueue(inbox, from_dict(second))
        await serve.wait_for(lambda: "both:file-first" in ids(serve))
        assert (await _post(info.webhook_url, secret, second)).json()["status"] == "duplicate"

        racing = [body(id=f"both:race-{n}", text=f"race {n}") for n in range(20)]
        statuses: list[str] = []

        async def by_webhook(data: dict[str, Any]) -> None:
            statuses.append((await _post(info.webhook_url, secret, data)).json()["status"])

        async with anyio.create_task_group() as tg:
            for data in racing:
                tg.start_soon(by_webhook, data)
                tg.start_soon(anyio.to_thread.run_sync, enqueue, inbox, from_dict(data))

        enqueue(inbox, from_dict(body(id="both:marker", text="marker")))
        await serve.wait_for(lambda: "both:marker" in ids(serve))

        expected = ["both:webhook-first", "both:file-first", *(d["id"] for d in racing), "both:marker"]
        assert sorted(ids(serve)) == sorted(expected)
        assert len(ids(serve)) == len(expected)
        assert set(statuses) <= {"delivered", "duplicate", "queued"}
        assert await drained(inbox)


BURST = int(os.environ.get("TIER3_BURST", "3000"))
BURST_PRODUCER = textwrap.dedent(
    """\
    import sys
    from pathlib import Path
    from mcp_cascade.inbox import enqueue
    from mcp_cascade.response import make_response
    inbox, count = Path(sys.argv[1]), int(sys.argv[2])
    for n in range(count):
        enqueue(inbox, make_response(type="message", user_id=1, text=f"burst {n}", id=f"burst:{n}"))
    """
)


def _producer_env() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}


async def test_a_burst_of_thousands_of_files_from_another_process_loses_none_and_keeps_order(
    home: Path,
) -> None:
    inbox = inbox_of(home, "file-h")
    async with ServeProcess(home, "file-h") as serve:
        await serve.wait_session()
        await serve.initialize()
        producer = await anyio.run_process(
            [sys.executable, "-c", BURST_PRODUCER, str(inbox), str(BURST)], env=_producer_env()
        )
        assert producer.returncode == 0, producer.stderr
        await serve.wait_channel(BURST, timeout=120)
        assert ids(serve) == [f"burst:{n}" for n in range(BURST)]
        assert await drained(inbox)


# --- the legacy folder (DESIGN 7) ------------------------------------------------------------------

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


# --- crashes at random moments ---------------------------------------------------------------------

KILLS = int(os.environ.get("TIER3_KILLS", "4"))


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_nothing_and_repeats_only_flagged_redeliveries(
    home: Path,
) -> None:
    session = "file-k"
    inbox = inbox_of(home, session)
    count = 400
    rng = random.Random(7)
    producer = await anyio.open_process(
        [sys.executable, "-c", BURST_PRODUCER, str(inbox), str(count)], env=_producer_env()
    )
    try:
        async with ServeProcess(home, session) as serve:
            for _ in range(KILLS):
                await serve.wait_session()
                await serve.initialize()
                with anyio.move_on_after(rng.uniform(0.05, 0.6)):
                    await serve.wait_channel(count)
                serve.kill()
                await serve.wait_exit()
                await serve.start()
            await serve.wait_session()
            await serve.initialize()
            await producer.wait()
            enqueue(inbox, from_dict(body(id="k:marker", text="marker")))
            await serve.wait_for(lambda: "k:marker" in ids(serve), timeout=120)
            assert await drained(inbox)
    finally:
        if producer.returncode is None:
            producer.kill()
        await producer.wait()
    seen: set[str] = set()
    for note in serve.channel():
        rid = note["params"]["meta"]["response_id"]
        if rid in seen:  # a repeat only ever comes from the crash window, and says so
            assert note["params"]["meta"].get("redelivered") == "true", rid
        seen.add(rid)
    store = Store(home / "sessions" / session / "state.db")
    try:
        stored = {f"burst:{n}": store.find(f"burst:{n}") for n in range(count)}
    finally:
        store.close()
    assert all(len(rows) == 1 for rows in stored.values()), "every file reached the store exactly once"
    assert sorted(set(stored) - seen) == [], "recorded in the store but never written to the client"
