"""Platforms other than Linux, as far as this Linux machine can show them.

macOS and Windows are simulated where the difference is one call away: a
process in which ``inotify_simple`` (and ``termios``) cannot be imported, in
which libc has no ``inotify_init1`` (a real library without the symbol, which
is what macOS's libc is to inotify_simple), in which inotify's init raises;
the durability helper with ``sys.platform`` and ``fcntl.F_FULLFSYNC`` as macOS
has them. Every serve here is a real subprocess.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from mcp_cascade import durable
from mcp_cascade.cli import main
from mcp_cascade.inbox import enqueue
from mcp_cascade.receive.store import Store
from mcp_cascade.response import from_dict
from mcp_cascade.signals import receiver, until_terminated
from mcp_cascade.testing import ServeProcess
from mcp_cascade.watchers import candidates, open_watcher
from tests.helpers import ROOT, body, run_inspect

# Runs mcp_cascade's __main__ in a process where inotify cannot be had, in the way named by argv[1].
SIMULATE = """
import sys, runpy
how = sys.argv.pop(1)
blocked = {"import": {"inotify_simple"}, "posix": {"inotify_simple", "termios"},
           "nothing": {"inotify_simple", "watchfiles"}}.get(how, set())
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Blocked())
if how == "libc":  # macOS: inotify_simple imports, its libc has no inotify_init1
    import ctypes, ctypes.util, inotify_simple
    class MacLibc(ctypes.CDLL):  # the real libc, minus inotify's symbols, failing as dlsym does there
        def __getattr__(self, name):
            if name.startswith("inotify_"):
                raise AttributeError(f"dlsym(RTLD_DEFAULT, {name}): symbol not found")
            return super().__getattr__(name)
    inotify_simple._libc = MacLibc(ctypes.util.find_library("c"), use_errno=True)
elif how == "init":  # the per-user instance limit, or any other failure of inotify_init1
    import errno, inotify_simple
    def refuse(self, *args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")
    inotify_simple.INotify.__init__ = refuse
runpy.run_module("mcp_cascade", run_name="__main__", alter_sys=True)
"""


class SimulatedServe(ServeProcess):
    """serve started through :data:`SIMULATE`."""

    def __init__(self, home: Path, session: str, how: str) -> None:
        super().__init__(home, session)
        self.how = how

    def command(self) -> list[str]:
        return [sys.executable, "-c", SIMULATE, self.how, *super().command()[3:]]


def simulated(how: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", SIMULATE, how, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("how", "backend", "why"),
    [
        ("import", "watchfiles", "inotify unavailable (ImportError: No module named 'inotify_simple')"),
        ("libc", "watchfiles", "inotify unavailable (AttributeError: "),
        ("init", "watchfiles", "inotify unavailable (OSError: [Errno 24] Too many open files)"),
        ("nothing", "poll", "watchfiles unavailable (ImportError: No module named 'watchfiles"),
    ],
)
async def test_serve_without_inotify_starts_delivers_and_says_which_watcher_and_why(
    home: Path, how: str, backend: str, why: str
) -> None:
    async with SimulatedServe(home, "mac-a", how) as serve:
        info = await serve.wait_session()
        await serve.initialize()
        enqueue(home / "sessions" / "mac-a" / "inbox", from_dict(body(id="tg:1:1", text="from the file")))
        (note,) = await serve.wait_channel(1)
        assert (note["params"]["content"], note["params"]["meta"]["tier"]) == ("from the file", "3")
        async with httpx.AsyncClient() as client:
            health = (await client.get(info.health_url + "/file")).json()
        assert (health["status"], health["watcher"], health["watch_armed"]) == ("ok", backend, True)
        assert health["watcher_reason"].startswith("auto: inotify is the Linux default; ")
        assert why in health["watcher_reason"]
        if how == "libc":
            assert "inotify_init1" in health["watcher_reason"]
        status = (await anyio.to_thread.run_sync(run_inspect, home, "status")).stdout
        assert f"inbox watcher: {backend} (auto: inotify is the Linux default;" in " ".join(status.split())
    assert serve.bad_lines == []


@pytest.mark.parametrize("args", [["--help"], ["send", "--help"], ["bridge", "--help"], ["schema"]])
def test_the_command_line_needs_neither_inotify_simple_nor_termios(args: list[str]) -> None:
    done = simulated("posix", *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout


def test_config_and_inspect_run_without_inotify_simple_and_termios(home: Path) -> None:
    for args in (["config", "--home", str(home)], ["inspect", "status", "--home", str(home)]):
        done = simulated("posix", *args)
        assert done.returncode == 0, done.stderr


def test_serve_on_windows_says_in_one_line_that_it_needs_wsl(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert main(["serve", "--home", str(home), "--session", "win-a"], env={}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err.count("\n") == 1 and "WSL 2" in err and err.startswith("mcp-cascade serve: needs Linux or macOS")
    )
    assert not (home / "sessions").exists()


def test_auto_starts_the_chain_at_watchfiles_where_inotify_is_not_the_kernel_s() -> None:
    assert candidates("auto", "darwin") == (
        ["watchfiles", "poll"],
        "auto: inotify is Linux-only (darwin); watchfiles is the default here",
    )
    assert candidates("auto", "win32")[0] == ["watchfiles", "poll"]
    assert candidates("auto", "linux") == (
        ["inotify", "watchfiles", "poll"],
        "auto: inotify is the Linux default",
    )
    assert candidates("watchfiles", "linux")[0] == ["watchfiles", "poll"]


async def test_a_forced_backend_that_cannot_start_hands_over_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**_: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("inotify_simple.INotify", refuse)
    async with open_watcher("inotify") as watcher:
        assert watcher.name == "watchfiles"
        assert watcher.reason == (
            "watcher = 'inotify' in the configuration;"
            " inotify unavailable (OSError: [Errno 24] Too many open files)"
        )
        watcher.add("inbox", tmp_path)
        (tmp_path / "a.json").write_bytes(b"{}")
        with anyio.fail_after(10):
            changes = await watcher.changes(10)
        assert ("inbox", "a.json") in {(c.key, c.name) for c in changes}


async def test_on_windows_no_signal_is_asked_of_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with receiver("SIGHUP") as hangups, receiver("SIGTERM", "SIGINT") as terminations:
        assert (hangups, terminations) == (None, None)
    with anyio.move_on_after(0.05) as scope:
        await until_terminated(lambda name: pytest.fail(f"no signal expected, got {name}"))
    assert scope.cancelled_caught  # it waits (Ctrl-C ends the process there) instead of failing


PLATFORM_ONLY = {
    "fcntl",
    "termios",
    "inotify_simple",
    "msvcrt",
    "winreg",
    "_winapi",
    "resource",
    "pwd",
    "grp",
}


def test_no_module_of_the_package_imports_a_platform_only_module_at_its_top() -> None:
    found = []
    for path in sorted((ROOT / "mcp_cascade").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in PLATFORM_ONLY]
    assert found == []


def test_every_fsync_of_the_package_goes_through_the_durability_helper() -> None:
    calls = []
    for path in sorted((ROOT / "mcp_cascade").rglob("*.py")):
        if path.name == "durable.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("fsync", "fdatasync", "F_FULLFSYNC"):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls == []


Syncs = list[tuple[str, str]]


def spy(monkeypatch: pytest.MonkeyPatch, *, fullfsync: Callable[[int, int], object] | None) -> Syncs:
    """Record each flush as (call, "dir"|"file"); ``fullfsync`` stands in for fcntl.fcntl when given."""
    seen: Syncs = []
    real_fsync, real_fcntl = os.fsync, fcntl.fcntl

    def kind(fd: int) -> str:
        return "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"

    def fsync(fd: int) -> None:
        seen.append(("fsync", kind(fd)))
        real_fsync(fd)

    def fcntl_(fd: int, cmd: int, arg: int = 0) -> object:
        if cmd == getattr(fcntl, "F_FULLFSYNC", None):
            seen.append(("F_FULLFSYNC", kind(fd)))
            return fullfsync(fd, cmd) if fullfsync else real_fcntl(fd, cmd, arg)
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(fcntl, "fcntl", fcntl_)
    return seen


def as_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable, "PLATFORM", "darwin")
    monkeypatch.setattr(
        fcntl, "F_FULLFSYNC", getattr(fcntl, "F_FULLFSYNC", 51), raising=False
    )  # macOS's value


def test_on_macos_a_durable_write_asks_the_drive_to_flush_the_file_and_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_macos(monkeypatch)
    seen = spy(monkeypatch, fullfsync=lambda fd, cmd: 0)
    durable.atomic_write(tmp_path / "state.json", b"{}")
    enqueue(tmp_path / "inbox", from_dict(body(id="tg:1:2")))
    assert seen == [("F_FULLFSYNC", "file"), ("F_FULLFSYNC", "dir")] * 2
    assert (tmp_path / "state.json").read_bytes() == b"{}"


def test_on_macos_a_filesystem_that_refuses_f_fullfsync_still_gets_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_macos(monkeypatch)
    seen = spy(monkeypatch, fullfsync=None)  # the real fcntl: Linux has no such command (EINVAL)
    durable.atomic_write(tmp_path / "state.json", b"{}")
    assert seen == [("F_FULLFSYNC", "file"), ("fsync", "file"), ("F_FULLFSYNC", "dir"), ("fsync", "dir")]


def test_on_linux_the_file_then_its_folder_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "PLATFORM", "linux")
    seen = spy(monkeypatch, fullfsync=None)
    enqueue(tmp_path / "inbox", from_dict(body(id="tg:1:3")))
    assert seen == [("fsync", "file"), ("fsync", "dir")]


def test_on_windows_the_file_is_flushed_and_no_folder_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "PLATFORM", "win32")
    seen = spy(monkeypatch, fullfsync=None)
    durable.atomic_write(tmp_path / "state.json", b"{}")
    assert seen == [("fsync", "file")]
    assert (tmp_path / "state.json").read_bytes() == b"{}"


def test_every_store_asks_sqlite_for_full_fsync_at_commits_and_checkpoints(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        pragmas = [
            store._db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("fullfsync", "checkpoint_fullfsync")
        ]
    finally:
        store.close()
    assert pragmas == [1, 1]


def test_on_macos_a_failing_disk_is_an_error_not_a_fallback_to_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_macos(monkeypatch)

    def broken_disk(fd: int, cmd: int) -> object:
        raise OSError(errno.EIO, "Input/output error")

    seen = spy(monkeypatch, fullfsync=broken_disk)
    with pytest.raises(OSError, match="Input/output error"):
        durable.atomic_write(tmp_path / "state.json", b"{}")
    assert seen == [("F_FULLFSYNC", "file")]
    assert not (tmp_path / "state.json").exists()
