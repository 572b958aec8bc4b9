"""Shared benchmark tooling: a lean keep-alive HTTP/1.1 client, floors, percentiles, reporting.

The client is deliberately minimal so that it costs the same against the bare
floor server and against serve; the comparison is then between servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp_cascade.ops.stats import nearest_rank

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; requests on it are serialised."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> HttpConnection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, f"{parts.hostname}:{parts.port}")

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        head = [f"POST {path} HTTP/1.1", f"host: {self._host}", f"content-length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        async with self._lock:
            self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            status_line = await self._reader.readline()
            length = 0
            while True:
                line = await self._reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            payload = await self._reader.readexactly(length)
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        self._writer.close()


class Pool:
    """A few connections, picked round-robin."""

    def __init__(self, conns: Sequence[HttpConnection]) -> None:
        self._conns = list(conns)
        self._next = 0

    @classmethod
    async def open(cls, url: str, size: int) -> Pool:
        return cls([await HttpConnection.open(url) for _ in range(size)])

    def pick(self) -> HttpConnection:
        self._next = (self._next + 1) % len(self._conns)
        return self._conns[self._next]

    def close(self) -> None:
        for conn in self._conns:
            conn.close()


async def bare_responder(status: bytes = b"200 OK") -> asyncio.Server:
    """A minimal asyncio HTTP/1.1 responder on loopback answering ``{}`` to every request: the floor."""
    reply = b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = 0
                while True:
                    line = await reader.readline()
                    if not line:
                        return
                    if line == b"\r\n":
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                writer.write(reply)
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


_RESPONDER = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from benchmarks._common import bare_responder

async def main():
    server = await bare_responder(sys.argv[2].encode())
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far (Linux ``/proc``).

    Unlike a rate, CPU time per request hardly moves when other processes load the
    machine: it is the figure to compare across runs on a busy machine.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Responder:
    url: str
    pid: int


@asynccontextmanager
async def bare_responder_process(status: bytes = b"200 OK") -> AsyncIterator[Responder]:
    """The bare responder in a process of its own, as serve is: its URL.

    A throughput floor must pit the client against a server in another process;
    in the client's own process the two would share one interpreter, and load
    from elsewhere on the machine would bend the floor differently from serve.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RESPONDER, str(ROOT), status.decode(), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        port = int(await asyncio.wait_for(child.stdout.readline(), 30))
        yield Responder(f"http://127.0.0.1:{port}/", child.pid)
    finally:
        child.kill()
        await child.wait()


async def bare_http_floor(samples: int = 2000) -> list[float]:
    """Round trips (ms) of the same client against a minimal asyncio HTTP responder on loopback."""
    server = await bare_responder()
    port = server.sockets[0].getsockname()[1]
    conn = await HttpConnection.open(f"http://127.0.0.1:{port}/")
    body = b'{"x":"' + b"y" * 300 + b'"}'
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        await conn.post("/", body, {"content-type": "application/json"})
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    server.close()
    await server.wait_closed()
    return out


def durable_write_floor(directory: Path, samples: int = 300) -> list[float]:
    """write tmp + fsync + rename + fsync(dir), in ms, on the disk under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = b"x" * 400
    out = []
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        for i in range(samples):
            t = time.perf_counter()
            tmp = directory / f"floor-{i}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            tmp.rename(directory / f"floor-{i}.json")
            os.fsync(dir_fd)
            out.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(dir_fd)
    for i in range(samples):
        (directory / f"floor-{i}.json").unlink(missing_ok=True)
    return out


@dataclass(frozen=True, slots=True)
class Stats:
    n: int
    p50: float
    p99: float
    p999: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        ordered = sorted(values)
        if not ordered:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))

        p99, p999 = nearest_rank(ordered, 0.99), nearest_rank(ordered, 0.999)
        return cls(len(ordered), statistics.median(ordered), p99, p999, ordered[-1])

    def row(self) -> str:
        return f"{self.n:>7} {self.p50:>9.3f} {self.p99:>9.3f} {self.p999:>9.3f} {self.max:>9.3f}"


HEADER = f"{'':<44}{'n':>7} {'p50 ms':>9} {'p99 ms':>9} {'p99.9 ms':>9} {'max ms':>9}"


def machine() -> dict[str, Any]:
    """Where a figure was measured."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def save(name: str, data: Mapping[str, Any]) -> Path:
    """Write results JSON under benchmarks/results/."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2, default=str) + "\n")
    return path
