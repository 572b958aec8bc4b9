"""The real Claude Code CLI, pinned, installed from npm, driven in its TUI under tmux.

The npm package ships its native binary in a platform package; the wrapper's
postinstall only copies it, so the binary is run directly. A session gets a
temporary HOME seeded with the first-run state the client would otherwise ask
for (onboarding, API key approval, project trust, the ``.mcp.json`` server
approval) and the cached feature flag that an account with channels has.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import anyio

from tests.claude.netns import Unavailable, current_netns, process_netns

CLAUDE_CODE_VERSION = "2.1.332"
PACKAGE = "@anthropic-ai/claude-code"
SERVER = "mcp-cascade"
# A dummy key: the client shows only its last 20 characters when asking to approve it.
API_KEY = "sk-ant-api03-offline-test-key-" + "0" * 60 + "cascadeofflinetestAA"
REGISTERED = f'MCP server "{SERVER}": Channel notifications registered'
SKIPPED = f'MCP server "{SERVER}": Channel notifications skipped'
DIALOG = "I am using this for local development"
_POLL = 0.05


def _platform_package() -> str:
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"{PACKAGE}-linux-{machine}"


def version_of(binary: Path) -> str | None:
    """The version the client binary reports, or None when it does not run."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    found = re.match(r"(\S+) \(Claude Code\)", done.stdout.strip())
    return found.group(1) if found else None


def install(cache: Path, version: str = CLAUDE_CODE_VERSION) -> Path:
    """The pinned client's native binary under ``cache``, installed with npm when absent.

    Raises :class:`Unavailable` when npm is missing or the registry cannot be reached.
    """
    if platform.system() != "Linux":
        raise Unavailable(f"the real-client tests run on Linux only, not {platform.system()}")
    binary = cache / "node_modules" / _platform_package() / "claude"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time across test processes
        if version_of(binary) == version:
            return binary
        npm = shutil.which("npm")
        if npm is None:
            raise Unavailable("npm is not installed, so Claude Code cannot be installed")
        shutil.rmtree(cache / "node_modules", ignore_errors=True)
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", f"{PACKAGE}@{version}"],
                capture_output=True,
                text=True,
                timeout=540,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(f"npm install {PACKAGE}@{version} timed out: registry unreachable?") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise Unavailable(f"npm install {PACKAGE}@{version} failed (registry unreachable?):\n{tail}")
        found = version_of(binary)
        if found != version:
            raise Unavailable(f"npm installed {binary} but it reports version {found!r}, not {version}")
        return binary


def seed_home(home: Path, project: Path, servers: Sequence[str]) -> None:
    """The client's first-run state: onboarding done, key approved, project trusted, servers approved."""
    home.mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
        "projects": {str(project): {"hasTrustDialogAccepted": True, "enabledMcpjsonServers": list(servers)}},
        # The client's cache of its remote feature flags, as for an account that has channels.
        "cachedGrowthBookFeatures": {"tengu_harbor": True},
    }
    (home / ".claude.json").write_text(json.dumps(state, indent=2))


def write_mcp_json(project: Path, command: str, args: Sequence[str]) -> None:
    """The project's ``.mcp.json`` with one stdio server, as the README tells users to write it."""
    project.mkdir(parents=True, exist_ok=True)
    config = {"mcpServers": {SERVER: {"command": command, "args": list(args)}}}
    (project / ".mcp.json").write_text(json.dumps(config, indent=2))


class ClaudeCode:
    """One interactive Claude Code session in a private tmux server, with ``serve`` from ``.mcp.json``.

    Must be entered inside the loopback-only network namespace
    (:func:`tests.claude.netns.run_isolated`); it checks that the client runs there.
    """

    def __init__(
        self,
        binary: Path,
        root: Path,
        api_url: str,
        *,
        serve_command: Sequence[str],
        allowed_tools: Sequence[str] = (),
        pythonpath: str = "",
    ) -> None:
        self.binary = binary
        self.root = root
        self.api_url = api_url
        self.serve_command = list(serve_command)
        self.allowed_tools = list(allowed_tools)
        self.pythonpath = pythonpath
        self.project = root / "project"
        self.home = root / "home"
        self.debug_file = root / "claude-debug.txt"
        self.tmux_socket = root / "tmux.sock"
        self.pid: int | None = None

    def environment(self) -> dict[str, str]:
        """The client's whole environment: built from nothing, so no negotiation or telemetry
        setting of the machine running the tests leaks in."""
        env = {
            "HOME": str(self.home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "ANTHROPIC_BASE_URL": self.api_url,
            "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
            # MCP tools stay in the tool list instead of behind tool search.
            "ENABLE_TOOL_SEARCH": "false",
        }
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def command(self) -> list[str]:
        """The client's command line."""
        cmd = [
            str(self.binary),
            "--debug-file",
            str(self.debug_file),
            "--dangerously-load-development-channels",
            f"server:{SERVER}",
            "--permission-mode",
            "default",
        ]
        if self.allowed_tools:
            cmd += ["--allowedTools", ",".join(self.allowed_tools)]
        return cmd

    async def _tmux(self, *args: str) -> str:
        with anyio.fail_after(30):
            done = await anyio.run_process(
                ["tmux", "-f", "/dev/null", "-S", str(self.tmux_socket), *args],
                env=self.environment(),
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode(errors="replace")

    async def __aenter__(self) -> ClaudeCode:
        if shutil.which("tmux") is None:
            raise Unavailable("tmux is not installed (apt-get install tmux)")
        seed_home(self.home, self.project, [SERVER])
        write_mcp_json(self.project, self.serve_command[0], self.serve_command[1:])
        await self._tmux(
            "new-session", "-d", "-x", "200", "-y", "50", "-c", str(self.project), *self.command()
        )
        self.pid = int((await self._tmux("display-message", "-p", "#{pane_pid}")).strip())
        if process_netns(self.pid) != current_netns():
            raise RuntimeError("the client is not inside the test's private network namespace")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        started = [self.pid, *self.descendants] if self.pid is not None else []
        with contextlib.suppress(RuntimeError):
            await self._tmux("kill-server")  # SIGHUP: the client stops its MCP servers and exits
        with anyio.move_on_after(10):
            while any(_alive(pid) for pid in started):  # noqa: ASYNC110 - no event for another process's exit
                await anyio.sleep(_POLL)
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    @property
    def descendants(self) -> list[int]:
        """The client's child processes (its MCP servers), while it runs."""
        if self.pid is None:
            return []
        return list(_children(self.pid))

    async def screen(self) -> str:
        """The visible pane text."""
        return await self._tmux("capture-pane", "-p")

    async def wait_screen(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` is on screen (the timeout's error shows the screen)."""
        with anyio.move_on_after(timeout):
            while text not in await self.screen():  # noqa: ASYNC110 - a terminal screen has no change event
                await anyio.sleep(_POLL)
            return
        raise TimeoutError(f"{text!r} not on screen after {timeout} s:\n{await self.screen()}")

    async def accept_channels_warning(self, timeout: float = 30.0) -> None:
        """Confirm the development-channels warning (its first option is preselected)."""
        await self.wait_screen(DIALOG, timeout)
        await self._tmux("send-keys", "Enter")

    def debug_log(self) -> str:
        """The client's debug log so far."""
        try:
            return self.debug_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def debug_lines(self, text: str) -> list[str]:
        """Debug log lines containing ``text``."""
        return [line for line in self.debug_log().splitlines() if text in line]

    async def wait_debug(self, *texts: str, timeout: float = 30.0) -> str:
        """The first debug log line containing any of ``texts``."""
        with anyio.fail_after(timeout):
            while True:
                for line in self.debug_log().splitlines():
                    if any(t in line for t in texts):
                        return line
                await anyio.sleep(_POLL)

    async def type(self, text: str, timeout: float = 30.0) -> None:
        """Type ``text`` at the prompt and press Enter once the prompt shows it."""
        await self._tmux("send-keys", "-l", text)
        await self.wait_screen(f"❯\N{NO-BREAK SPACE}{text}", timeout)
        await self._tmux("send-keys", "Enter")


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> Iterator[int]:
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                yield int(child)
                yield from _children(int(child))
    except (FileNotFoundError, ProcessLookupError):
        return


def serve_command(python: str, cascade_home: Path) -> list[str]:
    """``serve`` as the README configures it: the package run by the user's Python."""
    return [python, "-m", "mcp_cascade", "serve", "--home", str(cascade_home)]
