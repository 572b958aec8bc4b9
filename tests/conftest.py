"""Shared fixtures: a fresh home per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from mcp_cascade.testing.fake_api import FakeTelegram
from mcp_cascade.watchers import ORDER, BackendName

# The harness starts children as ``python -m mcp_cascade``, the installed package. pytest puts this
# checkout on its own path (``pythonpath = ["."]``); children get the same, so a run with an
# interpreter where the package is not installed still tests this checkout, from any working folder.
_CHECKOUT = str(Path(__file__).resolve().parent.parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_CHECKOUT, os.environ.get("PYTHONPATH")) if p)


# Fuzzing: "ci" (the default) is derandomized and keeps no example database, so a failure in CI reproduces
# from the test alone; HYPOTHESIS_PROFILE=deep runs many more examples, with random draws.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile("deep", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture(params=ORDER)
def backend(request: pytest.FixtureRequest) -> BackendName:
    """Each watcher backend in turn (inotify, watchfiles, poll), to be forced by the ``watcher`` setting."""
    name: BackendName = request.param
    return name


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable sticky directory (like ``/tmp``) that a second local account also reaches."""
    path = Path(tempfile.mkdtemp(prefix="cascade-shared-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A running fake Telegram Bot API (tests may define their own)."""
    async with FakeTelegram().serving() as running:
        yield running
