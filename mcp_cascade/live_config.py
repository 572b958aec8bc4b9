"""The configuration of a running process, reloaded from config.toml on change or SIGHUP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from mcp_cascade.config import KEYS, Config, Loaded, load_config
from mcp_cascade.events import Event, NullObserver, Observer
from mcp_cascade.signals import receiver
from mcp_cascade.watchers import Watcher, open_watcher

# Keys a running process reads once at start-up: a reload records them, they apply on the next start.
RESTART_KEYS = frozenset(
    {
        "sidecar_host",
        "listen_beyond_loopback",
        "sidecar_port",
        "bridge_port",
        "log_file",
        "log_level",
        "metrics",
        "audit_max_bytes",
        "audit_generations",
        "telegram_api_base",
        "legacy_dir",
        "retention_days",
        "watcher",
        "session_wait_ms",
        "nats_url",
        "nats_creds",
        "nats_tls_ca",
        "nats_dup_window_s",
        "nats_replicas",
    }
)
# config.toml changes rarely and a reload may wait: the poll backend looks twice a second.
_CONFIG_POLL_S = 0.5


class LiveConfig:
    """The configuration of a running process, reloaded from config.toml on change or SIGHUP.

    Readers take :attr:`current` once at the start of a unit of work (a
    delivery, a rescan) and keep that snapshot until it ends, so work in flight
    finishes under the settings it started with. A reload re-reads the file
    with the same environment and flags (they still win over the file); a bad
    file is rejected with a log line and the old configuration stays.
    """

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str],
        flags: Mapping[str, Any] | None = None,
        *,
        observer: Observer | None = None,
    ) -> None:
        self._loaded = load_config(home, env, flags)
        self._observer: Observer = observer or NullObserver()
        self._watching = False
        self._subscribers: list[Callable[[Config], None]] = []
        self._on_hangup: list[Callable[[], None]] = []

    @classmethod
    def from_loaded(cls, loaded: Loaded, *, observer: Observer | None = None) -> LiveConfig:
        """A live view of an already loaded configuration (same home, environment and flags)."""
        return cls(loaded.home, loaded.env, loaded.flags, observer=observer)

    @property
    def current(self) -> Config:
        """The configuration in force now."""
        return self._loaded.config

    @property
    def loaded(self) -> Loaded:
        """The configuration in force now, with where each value came from."""
        return self._loaded

    def subscribe(self, callback: Callable[[Config], None]) -> None:
        """Call ``callback`` with each new configuration a reload puts in force.

        For long-running loops that hold a setting between units of work (a
        rescan period); everything else reads :attr:`current` when it starts.
        """
        self._subscribers.append(callback)

    def on_hangup(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on each SIGHUP, before the reload (reopening a rotated log file)."""
        self._on_hangup.append(callback)

    def reload(self) -> bool:
        """Re-read the configuration; True when the new one is in force, False when it was rejected."""
        old = self._loaded
        try:
            new = load_config(old.home, old.env, old.flags)
        except Exception as exc:  # whatever the file holds, it is a rejection, never the end
            self._observer.emit(
                Event(
                    "config_rejected",
                    level="error",
                    reason=f"{exc}; keeping the configuration in force",
                    fields={"file": str(old.file)},
                )
            )
            return False
        self._loaded = new
        changed = sorted(k for k in KEYS if getattr(old.config, k) != getattr(new.config, k))
        if changed:
            for callback in self._subscribers:
                try:
                    callback(new.config)
                except Exception as exc:  # one subscriber's fault must not starve the others
                    self._observer.emit(
                        Event(
                            "config_rejected",
                            level="error",
                            reason=f"a subscriber failed to apply it: {exc!r}",
                        )
                    )
        self._observer.emit(
            Event(
                "config_reloaded",
                level="info" if changed else "debug",
                fields={
                    "changed": changed,
                    "on_restart": sorted(RESTART_KEYS.intersection(changed)),
                    "file": str(new.file),
                },
            )
        )
        return True

    async def watch(
        self, observer: Observer | None = None, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Reload on SIGHUP (where there is one) and whenever config.toml is written, replaced or removed.

        The file is watched by the backend the ``watcher`` key chooses (see
        :mod:`mcp_cascade.watchers`). Runs until cancelled; ``task_status`` is
        set once both are being watched. Only one watch per LiveConfig installs
        the signal handler and the file watch; a second call just waits.
        """
        if observer is not None:
            self._observer = observer
        if self._watching:
            task_status.started()
            await anyio.sleep_forever()
        self._watching = True
        try:
            async with (
                open_watcher(self.current.watcher, poll_s=_CONFIG_POLL_S) as watcher,
                anyio.create_task_group() as tg,
            ):
                with receiver("SIGHUP") as signals:
                    if signals is not None:
                        tg.start_soon(self._on_signals, signals)
                    if self._arm(watcher):
                        tg.start_soon(self._on_file, watcher)
                    task_status.started()
                    await anyio.sleep_forever()
        finally:
            self._watching = False

    async def _on_signals(self, signals: AsyncIterator[int]) -> None:
        async for _ in signals:
            for callback in self._on_hangup:
                callback()
            self.reload()

    def _arm(self, watcher: Watcher) -> bool:
        home = self._loaded.home
        try:
            watcher.add("config", home, writes=False, removals=True)
        except OSError as exc:
            self._observer.emit(
                Event("config_watch", level="warning", reason=f"cannot watch {home}: {exc}; SIGHUP only")
            )
            return False
        return True

    async def _on_file(self, watcher: Watcher) -> None:
        name = self._loaded.file.name
        while True:
            changes = await watcher.changes(3600.0)
            if any(c.name in (name, None) and c.kind != "gone" for c in changes):
                self.reload()
