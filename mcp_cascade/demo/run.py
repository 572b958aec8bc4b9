"""Runs the scenario under a deadline, reports, and leaves no process behind.

The demo lives in a temporary home (or an empty directory given with
``--home``, which is then kept). ``MCP_CASCADE_*`` variables of the caller's
environment are dropped first, so the demo runs on its own settings whatever
the shell has. Whatever happens (the deadline, Ctrl-C, SIGTERM, a failure),
every process it started is stopped, and as a last resort killed, before it
returns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from mcp_cascade.config import ENV_PREFIX
from mcp_cascade.demo.board import Board
from mcp_cascade.demo.scenario import DemoScenario
from mcp_cascade.demo.show import Show
from mcp_cascade.errors import ConfigError, unwrap
from mcp_cascade.testing import BridgeProcess, ServeProcess

DEADLINE_S = 60.0


class _Stopped(Exception):
    """A stop signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_demo(*, json_out: bool, home: Path | None = None) -> int:
    """Run the demo; 0 only when every response was delivered exactly once (128 + N after signal N)."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        del os.environ[key]
    if home is not None and home.exists() and any(home.iterdir()):
        raise ConfigError("home", f"{home} is not empty; the demo needs a fresh directory")
    workdir = Path(tempfile.mkdtemp(prefix="mcp-cascade-demo-")) if home is None else None
    root = workdir / "home" if workdir is not None else home
    assert root is not None
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    console = Console(quiet=json_out, highlight=False)
    held: list[DemoScenario] = []
    try:
        report, stopped = anyio.run(_main, root, home is not None, console, held)
    finally:
        for scenario in held:
            _kill_leftovers(scenario.children())
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    if json_out:
        print(json.dumps(report, indent=2))
    if stopped is not None:
        return 128 + stopped
    return 0 if report["verdict"]["exactly_once"] else 1


async def _main(
    home: Path, kept: bool, console: Console, held: list[DemoScenario]
) -> tuple[dict[str, Any], int | None]:
    board = Board()
    show = Show(console, board)
    board.on_note = show.note
    scenario = DemoScenario(home, board)
    held.append(scenario)
    error: str | None = None
    stopped: int | None = None
    console.print(
        f"[dim]home {home}{'' if kept else ' (temporary, removed at the end)'}[/dim]", soft_wrap=True
    )
    try:
        with anyio.fail_after(DEADLINE_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_signals)
                tg.start_soon(show.printer)

                async def play() -> None:
                    if console.is_terminal:
                        with show.live():
                            await scenario.run()
                    else:
                        await scenario.run()
                    tg.cancel_scope.cancel()

                tg.start_soon(play)
    except TimeoutError as exc:
        inner = _innermost(exc)
        why = f" ({inner})" if str(inner) else ""
        error = f"did not finish within {DEADLINE_S:g} s, at step {board.step!r}{why}"
    except BaseException as exc:  # the top boundary: one clear line, whatever broke
        inner = _innermost(exc)
        if isinstance(inner, _Stopped):
            error = f"stopped by {inner} at step {board.step!r}"
            stopped = inner.signum
        elif isinstance(inner, Exception):
            error = f"step {board.step!r}: {type(inner).__name__}: {inner}"
        else:
            raise
    show.flush()
    report = _report(board, scenario, time.perf_counter() - board.origin, error, home if kept else None)
    show.summary(report)
    return report, stopped


async def _signals() -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            raise _Stopped(signum)


def _innermost(exc: BaseException) -> BaseException:
    exc = unwrap(exc)
    if isinstance(exc, TimeoutError) and exc.__cause__ is not None and str(exc.__cause__):
        return exc.__cause__
    return exc


def _report(
    board: Board, scenario: DemoScenario, elapsed: float, error: str | None, home: Path | None
) -> dict[str, Any]:
    verdict = board.tally.verdict(complete=error is None)
    report: dict[str, Any] = {
        "verdict": verdict.to_dict(),
        "tiers": {str(t): f.to_dict() for t, f in board.tally.tiers().items()},
        "held": sum(1 for s in board.tally.sent.values() if s.held),
        "steps": [s.to_dict() for s in scenario.steps],
        "breaker_transitions": [t.to_dict(board.origin) for t in board.transitions],
        "failovers": [f.to_dict(board.origin) for f in board.failovers],
        "elapsed_s": round(elapsed, 3),
        "error": error,
        "home": None if home is None else str(home),
    }
    return report


def _kill_leftovers(children: Iterable[ServeProcess | BridgeProcess]) -> None:
    """SIGKILL any child still running (the graceful stop already had its chance)."""
    for child in children:
        process = child.process
        if process is not None and process.returncode is None:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            print(f"mcp-cascade demo: killed leftover pid {process.pid}", file=sys.stderr)
