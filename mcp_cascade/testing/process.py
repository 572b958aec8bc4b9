"""What every child process of the harness shares: spawn, environment, stderr, stop and kill.

Children run the installed package (``sys.executable -m mcp_cascade``), so a
wheel and an editable checkout behave alike: nothing here points Python at a
source tree.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

__all__ = ["ChildProcess", "child_env", "module_command", "stdout_lines"]

T = TypeVar("T")


def child_env(extra: Mapping[str, str] | None = None, *, clean: bool = False) -> dict[str, str]:
    """This process's environment plus ``extra``; ``clean`` drops inherited ``MCP_CASCADE_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not (clean and k.startswith("MCP_CASCADE_"))}
    env.update(extra or {})
    return env


class ChildProcess:
    """One child: its command line, environment and stderr file, and how it is stopped.

    Subclasses give :meth:`command` and, when EOF or SIGTERM is not how the
    child is asked to stop, override :meth:`ask_to_stop`.
    """

    stop_grace_s = 10.0
    """How long :meth:`stop` waits after asking before it kills."""

    def __init__(self, stderr_path: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.stderr_path = stderr_path
        self.extra_env = dict(env or {})
        self.cwd: Path | None = None
        self.process: Process | None = None

    def command(self) -> list[str]:
        """The command line that starts the child."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The child's environment."""
        return child_env(self.extra_env)

    async def spawn(self, *, stdin: int | None, stdout: int | IO[bytes] | None) -> Process:
        """Start the child, stderr appended to :attr:`stderr_path`."""
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("ab") as stderr:
            self.process = await anyio.open_process(
                self.command(),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=self.environment(),
                cwd=str(self.cwd) if self.cwd else None,
            )
        return self.process

    @property
    def running(self) -> bool:
        """Whether the child was started and has not exited."""
        return self.process is not None and self.process.returncode is None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the child."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the child to exit; returns its exit code."""
        assert self.process is not None
        with anyio.fail_after(timeout):
            return await self.process.wait()

    async def ask_to_stop(self) -> None:
        """The polite request to stop: SIGTERM."""
        self.kill(signal.SIGTERM)

    async def stop(self) -> None:
        """Ask the child to stop, then SIGKILL it if it has not exited within :attr:`stop_grace_s`."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            await self.ask_to_stop()
            with anyio.move_on_after(self.stop_grace_s):
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def wait_published(self, read: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
        """Poll ``read`` (a file the child publishes) until it gives a value; raise if the child exits."""
        with anyio.fail_after(timeout):
            while (value := read()) is None:
                if self.process is not None and self.process.returncode is not None:
                    raise RuntimeError(f"{what} exited {self.process.returncode}: {self.stderr_tail()}")
                await anyio.sleep(0.01)
        return value

    def stderr_text(self) -> str:
        """Everything the child wrote to stderr."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 20) -> str:
        """The last lines of stderr."""
        return "\n".join(self.stderr_text().splitlines()[-lines:])


async def stdout_lines(process: Process) -> AsyncIterator[str]:
    """The child's stdout, line by line (a last line without a newline included), until it closes."""
    assert process.stdout is not None
    buffer = ""
    async for chunk in TextReceiveStream(process.stdout):
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield line
    if buffer.strip():
        yield buffer


def module_command(*args: str | Path) -> list[str]:
    """``python -m mcp_cascade ARGS`` with this interpreter."""
    return [sys.executable, "-m", "mcp_cascade", *(str(a) for a in args)]
