"""serve's stdin and stdout as the MCP transport sees them.

The SDK's defaults read stdin in a worker thread that cancellation cannot
interrupt (SIGTERM would wait for the next line) and write stdout through two
thread hops per frame. Here stdin is read by a daemon thread with raw
``os.read`` and stdout is written straight from the event loop on a
non-blocking descriptor, waiting for writability only when the pipe is full.
File descriptor 1 is pointed at stderr while serving, so a stray print can
never corrupt the protocol stream.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator

import anyio
import anyio.from_thread
import anyio.lowlevel


class StdinLines:
    """stdin lines from a daemon thread, so shutdown never waits on a blocked read."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._send, self._receive = anyio.create_memory_object_stream[str](64)
        self._token = anyio.lowlevel.current_token()
        threading.Thread(target=self._pump, name="stdin", daemon=True).start()

    def _pump(self) -> None:
        # Raw os.read: a buffered sys.stdin would still hold its lock at interpreter shutdown.
        pending = b""
        try:
            while chunk := os.read(self._fd, 65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    anyio.from_thread.run(self._send.send, raw.decode("utf-8", "replace"), token=self._token)
            if pending.strip():
                anyio.from_thread.run(self._send.send, pending.decode("utf-8", "replace"), token=self._token)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, RuntimeError, OSError):
            return  # the server stopped listening, or the loop is gone
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(self._send.close, token=self._token)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._receive.__aiter__()


class StdoutFrames:
    """Writes frames to a private duplicate of fd 1 without leaving the event loop."""

    def __init__(self) -> None:
        self._fd = os.dup(1)
        os.dup2(2, 1)  # from now on anything printed lands on stderr, never in the protocol
        os.set_blocking(self._fd, False)
        self._lock = anyio.Lock()

    async def write(self, text: str) -> None:
        data = memoryview(text.encode())
        async with self._lock:
            while data:
                try:
                    data = data[os.write(self._fd, data) :]
                except BlockingIOError:
                    await anyio.wait_writable(self._fd)

    async def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        os.close(self._fd)


def protocol_stdio() -> tuple[StdinLines, StdoutFrames]:
    """The (stdin, stdout) pair to hand to the SDK's ``stdio_server``."""
    return StdinLines(), StdoutFrames()
