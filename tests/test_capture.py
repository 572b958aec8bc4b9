"""Library warnings and uncaught exceptions land in the JSON log, not as plain text on stderr."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_cascade.capture import capture_into
from mcp_cascade.ops.telemetry import JsonLog, Telemetry


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    stream = io.StringIO()
    capture_into(Telemetry(log=JsonLog(stream, "info", component="serve"), audit=None, metrics=None))
    yield stream
    logging.captureWarnings(False)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_library_warning_and_a_python_warning_become_json_lines(captured: io.StringIO) -> None:
    logging.getLogger("somelib").warning("disk %s is slow", "sda")
    logging.getLogger("somelib").info("chatter below the threshold")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("this API goes away", DeprecationWarning, stacklevel=1)
    found = records(captured)
    assert [(r["event"], r["level"]) for r in found] == [
        ("library_log", "warning"),
        ("python_warning", "warning"),
    ]
    assert found[0]["reason"] == "disk sda is slow" and found[0]["logger"] == "somelib"
    assert "this API goes away" in found[1]["reason"]
    assert all(r["component"] == "serve" for r in found)


def test_an_uncaught_exception_in_a_thread_is_one_json_line_with_its_traceback(captured: io.StringIO) -> None:
    def boom() -> None:
        raise RuntimeError("worker fell over")

    worker = threading.Thread(target=boom, name="worker-7")
    worker.start()
    worker.join()
    (found,) = records(captured)
    assert found["event"] == "uncaught" and found["level"] == "error"
    assert found["where"] == "thread worker-7"
    assert "RuntimeError: worker fell over" in found["reason"] and "Traceback" in found["reason"]


def test_an_exception_in_a_forgotten_asyncio_task_is_captured(captured: io.StringIO) -> None:
    async def fail() -> None:
        raise ValueError("task failed, nobody awaited it")

    async def main() -> None:
        asyncio.get_running_loop().create_task(fail())  # forgotten on purpose: nobody awaits it
        await asyncio.sleep(0)

    asyncio.run(main())
    gc.collect()
    (found,) = records(captured)
    assert found["event"] == "library_log" and found["logger"] == "asyncio"
    assert "ValueError: task failed" in found["reason"]
