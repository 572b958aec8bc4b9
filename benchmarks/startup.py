"""Start-up and footprint of the commands a person or a shell bridge runs, whole processes.

    python -m benchmarks.startup [--n 7] [--json]

- ``mcp-cascade --help``: wall time;
- ``mcp-cascade send`` to a session that is not running (tier 3) and to a running one
  (tier 1): wall time and peak RSS of the whole process; each receipt must name that tier;
- ``mcp-cascade serve``: from process start to the ``initialize`` answer on stdout, and
  its resident memory once idle.

Floors in the same run: ``python -c pass`` (an interpreter that does nothing) and
``python -c "import mcp.server.stdio"`` (the MCP SDK alone, which serve cannot
answer ``initialize`` without). Peak RSS comes from GNU time (``/usr/bin/time``); CPU
time (user + system, which a busy machine stretches less than wall time) from the
rusage of the finished child. The load average before and after the run is printed
and saved beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import save
from benchmarks._report import Target, cdf_svg, progress, verdicts

PY = sys.executable
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "b", "version": "1"},
    },
}


def timed(argv: list[str], env: dict[str, str], tier: int | None = None) -> tuple[float, float, float]:
    """Wall ms, peak RSS (MiB, as GNU time reports it: the program's own, not the fork's) and CPU ms.

    ``tier``: the command is a send, and its receipt must name that tier (the figure is the path's).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert done.returncode == 0, (argv, done.stderr[-300:])
    if tier is not None:
        receipt = json.loads(done.stdout)
        assert receipt["tier"] == tier, receipt
    return wall, int(done.stderr.split()[-1]) / 1024, used * 1000


def serve_once(home: Path, env: dict[str, str]) -> tuple[float, float]:
    """ms from spawning serve to its initialize answer, and its RSS (MiB) after a second idle."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "mcp_cascade", "serve", "--home", str(home), "--session", "startup"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
    proc.stdin.flush()
    line = proc.stdout.readline()
    ready = (time.perf_counter() - start) * 1000
    assert b'"result"' in line, line
    time.sleep(1.0)
    rss = next(
        ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if ln.startswith("VmRSS")
    )
    proc.stdin.close()
    proc.wait(timeout=30)
    return ready, int(rss.split()[1]) / 1024


def median(values: list[float]) -> float:
    return statistics.median(values)


def run(n: int, plain: bool) -> dict[str, Any]:
    samples: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="mcp-cascade-startup-") as tmp,
        progress("startup", 7 * n, plain=plain) as tick,
    ):
        home = Path(tmp, "home")
        env = {**os.environ, "MCP_CASCADE_HOME": str(home)}
        send = [PY, "-m", "mcp_cascade", "send", "--text", "hi", "--session"]
        runs = {
            "floor: python -c pass": [PY, "-c", "pass"],
            "floor: import the MCP SDK": [PY, "-c", "import mcp.server.stdio"],
            "mcp-cascade --help": [PY, "-m", "mcp_cascade", "--help"],
            "send to a session not running": [*send, "gone"],
        }
        for _ in range(n):
            for name, argv in runs.items():
                wall, peak, used = timed(argv, env, 3 if name.startswith("send") else None)
                samples.setdefault(name, []).append(wall)
                rss.setdefault(name, []).append(peak)
                cpu.setdefault(name, []).append(used)
                tick()
        live = subprocess.Popen(
            [PY, "-m", "mcp_cascade", "serve", "--home", str(home), "--session", "live"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while not (home / "sessions" / "live" / "session.json").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            for _ in range(n):
                wall, _, used = timed([*send, "live", "--tier", "auto"], env, 1)
                samples.setdefault("send through tier 1", []).append(wall)
                cpu.setdefault("send through tier 1", []).append(used)
                tick()
        finally:
            assert live.stdin is not None
            live.stdin.close()
            live.wait(timeout=30)
        for _ in range(n):
            ready, idle = serve_once(Path(tmp, "serve-home"), env)
            samples.setdefault("serve: start → initialize answered", []).append(ready)
            rss.setdefault("serve: idle", []).append(idle)
            tick()
    load = (load_before, os.getloadavg())
    print(f"load average (1, 5, 15 min): before {load[0]}, after {load[1]}")
    print(f"{'':<40}{'p50 ms':>9} {'max ms':>9} {'CPU ms':>9} {'peak RSS MiB':>13}")
    for name, values in samples.items():
        spent = f"{median(cpu[name]):>9.1f}" if name in cpu else f"{'':>9}"
        resident = f"{median(rss[name]):>13.1f}" if name in rss else ""
        print(f"{name:<40}{median(values):>9.1f} {max(values):>9.1f} {spent} {resident}")
    print(f"{'serve: idle RSS':<40}{'':>29} {median(rss['serve: idle']):>13.1f}")
    floor = median(samples["floor: python -c pass"])
    sdk = median(samples["floor: import the MCP SDK"])
    targets = verdicts(
        [
            Target("mcp-cascade --help", median(samples["mcp-cascade --help"]), 200, floor=floor),
            Target(
                "send to a dead session, p50",
                median(samples["send to a session not running"]),
                300,
                floor=floor,
            ),
            Target("send through tier 1, p50", median(samples["send through tier 1"]), 400, floor=floor),
            Target(
                "serve answers initialize, p50",
                median(samples["serve: start → initialize answered"]),
                400,
                floor=sdk,
            ),
            Target(
                "serve idle RSS",
                median(rss["serve: idle"]),
                55,
                unit="MiB",
                floor=median(rss["floor: import the MCP SDK"]),
            ),
        ]
    )
    picture = cdf_svg("startup", "Start-up: whole processes, wall time", samples)
    return {
        "n": n,
        "p50_ms": {name: median(values) for name, values in samples.items()},
        "peak_rss_mib": {name: median(values) for name, values in rss.items()},
        "cpu_ms": {name: median(values) for name, values in cpu.items()},
        "load_average": {"before": load[0], "after": load[1]},
        "targets": targets,
        "picture": picture.name if picture else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--json", action="store_true", help="no progress bar; print the results as JSON")
    args = parser.parse_args()
    result = run(args.n, args.json)
    print(f"\nresults: {save('startup', result)}")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
