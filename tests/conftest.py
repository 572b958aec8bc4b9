"""Shared fixtures: a fresh home per test."""

from __future__ import annotations

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
