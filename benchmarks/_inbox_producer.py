"""The inbox producer for the tier-3 benchmark: a separate process that writes responses as DESIGN 6 says.

``python -m benchmarks._inbox_producer`` reads one command per stdin line and prints three
``time.perf_counter()`` stamps per line on stdout (CLOCK_MONOTONIC on Linux, the same clock
as the consumer's). :func:`producer` starts it and drives it one command at a time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from mcp_cascade.durable import fsync_dir, write_excl
from mcp_cascade.inbox import file_name
from mcp_cascade.response import make_response

REPO = Path(__file__).resolve().parent.parent


def produce() -> None:
    """Producer loop: one command per stdin line, three timestamps per line on stdout.

    ``enqueue <inbox> <id>`` follows DESIGN 6 step by step (what ``inbox.enqueue`` does) and prints the
    times of its first write, of the rename into new/ and of the end of the final fsync;
    ``rename <dir> <name>`` renames a prepared file into ``dir`` (the bare wake-up floor).
    """
    for line in sys.stdin:
        verb, where, key = line.split()
        if verb == "enqueue":
            root = Path(where)
            response = make_response(type="message", user_id=1, text=key, id=key)
            name, body = file_name(response), response.to_json()
            start = time.perf_counter()
            write_excl(root / "tmp" / name, body)
            renamed = time.perf_counter()
            (root / "tmp" / name).rename(root / "new" / name)
            fsync_dir(root / "new")
            durable = time.perf_counter()
        else:
            staging = Path(where).parent / "staging"
            staging.mkdir(exist_ok=True)
            (staging / key).write_bytes(b"{}")
            start = renamed = durable = time.perf_counter()
            (staging / key).rename(Path(where) / key)
        print(f"{start} {renamed} {durable}", flush=True)


@dataclass(frozen=True, slots=True)
class Stamps:
    """When the producer started writing, renamed into new/, and had fsynced new/."""

    start: float
    renamed: float
    durable: float


class Producer:
    """The producer subprocess, driven one command at a time."""

    def __init__(self, process: Process) -> None:
        self._process = process
        assert process.stdout is not None
        self._lines = TextReceiveStream(process.stdout)
        self._buffer = ""

    async def command(self, verb: str, where: Path, key: str) -> Stamps:
        """Run one command; return its perf_counter times."""
        await self.send(verb, where, key)
        return await self.reply()

    async def send(self, verb: str, where: Path, key: str) -> None:
        """Ask for one command without waiting for it."""
        assert self._process.stdin is not None
        await self._process.stdin.send(f"{verb} {where} {key}\n".encode())

    async def reply(self) -> Stamps:
        """The times of the command sent last."""
        while "\n" not in self._buffer:
            self._buffer += await self._lines.receive()
        line, self._buffer = self._buffer.split("\n", 1)
        start, renamed, durable = line.split()
        return Stamps(float(start), float(renamed), float(durable))


@asynccontextmanager
async def producer() -> AsyncIterator[Producer]:
    """The producer running in its own process, stopped (stdin closed, then killed) on exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    async with await anyio.open_process(
        [sys.executable, "-m", "benchmarks._inbox_producer"], env=env, cwd=str(REPO)
    ) as process:
        try:
            yield Producer(process)
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()


if __name__ == "__main__":
    produce()
