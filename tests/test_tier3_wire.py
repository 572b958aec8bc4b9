"""Tier 3 end to end: files in the inbox (and a legacy folder) become channel notifications of serve.

Every test runs once per watcher backend (inotify, watchfiles, poll), forced
through ``MCP_CASCADE_WATCHER`` in serve's environment. Producers are separate
processes (a shell script following DESIGN 6 by hand, a Python loop calling
``enqueue``, a slow in-place writer); serve is a real subprocess, killed with
SIGKILL where a crash is what is being tested.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import from_dict
from mcp_cascade.testing import ServeProcess
from mcp_cascade.validation import MAX_BODY_BYTES
from mcp_cascade.watchers import BackendName
from tests.helpers import body, encode, sign
from tests.tier3 import (  # noqa: F401 - forced_backend is an autouse fixture
    FAST,
    contents,
    drained,
    forced_backend,
    hand_write,
    ids,
    inbox_of,
    lexists,
    recorded_delivered,
    restart_then_mark,
)

pytestmark = pytest.mark.anyio


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
