"""Blocking calls made at the same time, run together: one worker-thread hop for the lot.

A busy sender makes every response durable in its outbox and removes it once
delivered, each a small blocking disk operation. One worker-thread hop per
operation cost more of its event loop than the rest of a delivery, and one
directory fsync per response more of the disk. :class:`Grouped` runs the first
call at once; calls that arrive while it runs wait and go together in the next
batch (a group commit), so a lone call is as fast as before and a crowd shares
the hop and the fsync.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

__all__ = ["Grouped"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False, slots=True)
class _Call(Generic[T, R]):
    arg: T
    done: bool = False
    result: list[R] = field(default_factory=list)  # its one value, once done without an error
    error: Exception | None = None


class Grouped(Generic[T, R]):
    """``await grouped(arg)`` is ``run_many([arg])[0]``, batched with the calls made meanwhile.

    ``run_many`` is blocking (it runs in a worker thread) and returns one result per
    argument, in order: a value, or the exception that call raises. Shield the call
    from cancellation when its result must not be lost (a lock it holds, say): the
    batch it joined runs anyway.
    """

    def __init__(self, run_many: Callable[[Sequence[T]], Sequence[R | Exception]], limit: int = 64) -> None:
        self._run_many = run_many
        self._limit = limit
        self._waiting: list[_Call[T, R]] = []
        self._running = False
        self._ran = anyio.Event()

    async def __call__(self, arg: T) -> R:
        call: _Call[T, R] = _Call(arg)
        self._waiting.append(call)
        while not call.done:
            if self._running:
                ran = self._ran
                await ran.wait()
                continue
            await self._run_batch()
        if call.error is not None:
            raise call.error
        return call.result[0]

    async def _run_batch(self) -> None:
        batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
        self._running = True
        try:
            results = await anyio.to_thread.run_sync(self._run_many, [call.arg for call in batch])
            for call, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    call.error = result
                else:
                    call.result.append(result)
        except Exception as exc:  # run_many itself failed: that is each of its calls' failure, raised there
            for call in batch:
                call.error = exc
        finally:
            for call in batch:
                call.done = True
            self._running = False
            ran, self._ran = self._ran, anyio.Event()
            ran.set()
