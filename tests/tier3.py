"""Helpers of the tier-3 end-to-end tests: the backend forced on serve, producers in other processes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from mcp_cascade.inbox import enqueue
from mcp_cascade.receive.store import Store
from mcp_cascade.response import from_dict
from mcp_cascade.testing import ServeProcess
from mcp_cascade.watchers import BackendName
from tests.helpers import body, encode


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
        store = Store.open(home / "sessions" / session / "state.db")
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


def producer_env() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
