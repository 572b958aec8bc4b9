"""Real ``nats-server`` processes on loopback: one node, or a three-node JetStream cluster.

For the tests, the soak's ``cluster`` scenario and the NATS benchmark: random
free ports, file storage in a given folder, SIGKILL and restart on the same
ports and store (what a crash and a supervisor restart look like).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NatsCluster", "NatsNode", "free_port", "nats_server_binary"]

_READY_S = 30.0


def nats_server_binary() -> str | None:
    """The ``nats-server`` on PATH (Debian's package installs it in /usr/bin), or None."""
    return shutil.which("nats-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NatsNode:
    """One nats-server with JetStream; ``routes`` makes it a member of a cluster."""

    name: str
    store: Path
    log: Path
    port: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The nats-server command line."""
        binary = nats_server_binary()
        if binary is None:
            raise FileNotFoundError("nats-server is not installed (Debian: apt-get install nats-server)")
        cmd = [binary, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)]
        cmd += ["-m", str(self.monitor), "-n", self.name]
        if self.cluster_port is not None:
            cmd += ["--cluster_name", "cascade", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            cmd += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return cmd

    def start(self) -> None:
        """Start it (again, on the same ports and store)."""
        self.store.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=log)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Terminate and wait (SIGKILL after 5 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def healthy(self) -> bool:
        """Whether its /healthz says JetStream is ready."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/healthz", timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = _READY_S) -> None:
        """Block until /healthz is 200 (raises TimeoutError with the log's tail)."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self._tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self.name} not ready in {timeout:g} s: {self._tail()}")
            time.sleep(0.05)

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-10:])
        except FileNotFoundError:
            return ""


class NatsCluster:
    """``size`` nodes (1: a single server; 3: a JetStream cluster on loopback)."""

    def __init__(self, folder: Path, size: int = 1) -> None:
        self.nodes: list[NatsNode] = []
        cluster_ports = [free_port() for _ in range(size)] if size > 1 else []
        for i in range(size):
            node = NatsNode(f"n{i + 1}", folder / f"n{i + 1}" / "store", folder / f"n{i + 1}.log")
            if size > 1:
                node.cluster_port = cluster_ports[i]
                node.routes = tuple(p for j, p in enumerate(cluster_ports) if j != i)
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (the form ``nats_url`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def __enter__(self) -> NatsCluster:
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()
