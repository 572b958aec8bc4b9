"""Blocking calls made together run as one batch in one worker-thread hop."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import anyio
import anyio.to_thread
import pytest

from mcp_cascade.send.grouped import Grouped

pytestmark = pytest.mark.anyio


class Recording:
    """run_many that records its batches; the first batch waits until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, args: Sequence[int]) -> list[int | Exception]:
        if not self.batches:
            self.entered.set()
            self.release.wait(10)
        self.batches.append(list(args))
        return [ValueError(f"odd {a}") if a % 2 else a * 10 for a in args]


async def test_calls_made_while_a_batch_runs_go_together_in_the_next_one() -> None:
    run_many = Recording()
    grouped: Grouped[int, int] = Grouped(run_many)
    results: dict[int, int | str] = {}

    async def call(arg: int) -> None:
        try:
            results[arg] = await grouped(arg)
        except ValueError as exc:
            results[arg] = str(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 0)
            await anyio.to_thread.run_sync(run_many.entered.wait)
            for arg in range(1, 5):
                tg.start_soon(call, arg)
            await anyio.wait_all_tasks_blocked()  # the other four wait for the running batch
            run_many.release.set()
    assert run_many.batches == [[0], [1, 2, 3, 4]]
    assert results == {0: 0, 1: "odd 1", 2: 20, 3: "odd 3", 4: 40}


async def test_a_failing_batch_fails_each_of_its_calls_and_the_next_call_runs() -> None:
    calls: list[Sequence[int]] = []

    def run_many(args: Sequence[int]) -> list[int | Exception]:
        calls.append(args)
        if len(calls) == 1:
            raise OSError("disk")
        return list(args)

    grouped: Grouped[int, int] = Grouped(run_many)
    with anyio.fail_after(10):
        with pytest.raises(OSError, match="disk"):
            await grouped(1)
        assert await grouped(2) == 2
