"""Shared fixtures: a fresh home per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_cascade.watchers import ORDER, BackendName


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
