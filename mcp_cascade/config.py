"""One configuration model, loaded in one place, and reloaded while a process runs.

Precedence, lowest first: built-in defaults, ``$MCP_CASCADE_HOME/config.toml``,
``MCP_CASCADE_*`` environment variables, command-line flags. Nothing else in the
package reads ``os.environ``: callers pass the mapping in.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
from anyio.abc import TaskStatus
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mcp_cascade.errors import ConfigError
from mcp_cascade.events import Event, NullObserver, Observer
from mcp_cascade.signals import receiver
from mcp_cascade.watchers import Watcher, WatcherSetting, open_watcher

ENV_PREFIX = "MCP_CASCADE_"
TierKey = Literal["webhook", "bridge", "file"]
SESSION_ID_RE = re.compile(r"^[a-z0-9-]{1,64}$")


class Config(BaseModel):
    """Every tunable of serve, send and bridge; frozen once loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_timeout_ms: int = Field(100, ge=1, le=60_000, description="tier-1 POST timeout")
    bridge_timeout_ms: int = Field(500, ge=1, le=60_000, description="tier-2 redelivery budget")
    file_debounce_ms: int = Field(500, ge=0, le=60_000, description="quiet time for legacy in-place files")
    file_rescan_ms: int = Field(1000, ge=10, le=3_600_000, description="periodic inbox rescan")
    watcher: WatcherSetting = Field(
        "auto", description="inbox and config.toml wake-ups: auto, inotify, watchfiles or poll"
    )
    overall_timeout_ms: int = Field(10_000, ge=1, le=3_600_000, description="report undelivered after")
    tier_order: tuple[TierKey, ...] = Field(
        ("webhook", "bridge", "file"), min_length=1, description="sender's tier priorities"
    )
    breaker_threshold: int = Field(5, ge=1, le=1000, description="consecutive failures that open it")
    breaker_reset_ms: int = Field(1000, ge=1, le=3_600_000, description="wait before the first probe")
    breaker_max_reset_ms: int = Field(16_000, ge=1, le=3_600_000, description="cap of the probe wait")
    slow_after: int = Field(3, ge=1, le=1000, description="slow tier-1 answers in a row that degrade it")
    sidecar_host: str = Field("127.0.0.1", description="sidecar bind address")
    listen_beyond_loopback: bool = Field(
        False,
        validate_default=True,
        description="allow a non-loopback sidecar_host (webhook, health, metrics open to the network)",
    )
    sidecar_port: int = Field(0, ge=0, le=65_535, description="sidecar port, 0 for any free one")
    bridge_port: int = Field(0, ge=0, le=65_535, description="bridge API port, 0 for any free one")
    http_header_bytes: int = Field(
        16_384, ge=1024, le=1_048_576, description="largest request head the sidecar and bridge API read"
    )
    http_header_timeout_ms: int = Field(
        5000, ge=10, le=600_000, description="time a client has to send a request's headers"
    )
    http_body_timeout_ms: int = Field(
        10_000, ge=10, le=600_000, description="time a client has to send a request's body after its headers"
    )
    http_max_connections: int = Field(
        64, ge=1, le=65_536, description="open connections the sidecar and bridge API hold at once"
    )
    http_keep_alive_ms: int = Field(
        5000, ge=10, le=600_000, description="idle keep-alive connections closed after"
    )
    retention_days: int = Field(7, ge=7, le=3650, description="how long delivered ids are kept")
    session_wait_ms: int = Field(5000, ge=0, le=600_000, description="wait for a session's closing holder")
    legacy_webhook_unsigned: bool = Field(
        False, description="accept cctelegram's unsigned webhook body from any local process (loopback)"
    )
    legacy_dir: Path | None = Field(None, description="a legacy responses folder to watch")
    log_file: Path | None = Field(None, description="JSON log lines go here instead of stderr")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log threshold")
    metrics: bool = Field(True, description="record OpenTelemetry metrics")
    audit_max_bytes: int = Field(10 * 1024 * 1024, ge=4096, description="audit file size before rotation")
    audit_generations: int = Field(3, ge=1, le=1000, description="rotated audit files kept")
    telegram_api_base: str = Field("https://api.telegram.org/bot", description="Bot API base URL")
    allow: tuple[int, ...] = Field((), description="Telegram user ids allowed to answer")
    flood_chat_per_s: float = Field(1.0, gt=0, le=1000, description="bridge: messages a second to one person")
    flood_burst: int = Field(3, ge=1, le=100, description="bridge: messages at once to one person")
    flood_group_per_min: float = Field(
        20.0, gt=0, le=60_000, description="bridge: messages a minute to a group"
    )
    flood_global_per_s: float = Field(30.0, gt=0, le=1000, description="bridge: messages a second in all")
    receipt_accepted: str = Field("👀", description="bridge: reaction once an answer is durable")
    receipt_delivered: str = Field("👌", description="bridge: reaction once the session has it")
    receipt_waiting: str = Field("😴", description="bridge: reaction when not delivered in time")
    file_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1, le=20 * 1024 * 1024, description="bridge: largest file taken from a person"
    )
    nats_url: str | None = Field(
        None, description="NATS server(s) for sessions on other hosts, comma-separated; unset: local only"
    )
    nats_creds: Path | None = Field(None, description="NATS .creds file (JWT and NKey seed)")
    nats_tls_ca: Path | None = Field(None, description="CA bundle that signs the NATS server's tls:// cert")
    nats_replicas: int = Field(1, ge=1, le=5, description="copies of the JetStream stream (3 on a cluster)")
    nats_dup_window_s: int = Field(
        120, ge=1, le=7 * 86400, description="JetStream duplicate window; covers a sender's retry span"
    )

    @field_validator("receipt_accepted", "receipt_delivered", "receipt_waiting")
    @classmethod
    def _reaction(cls, value: str) -> str:
        from mcp_cascade.bridge.receipts import REACTIONS

        if value not in REACTIONS:
            raise ValueError(f"{value!r} is not in Telegram's reaction set: {' '.join(sorted(REACTIONS))}")
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_urls(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for url in value.split(","):
            if not re.match(r"^(nats|tls)://[^\s/]+$", url.strip()):
                raise ValueError(f"{url.strip()!r} is not a nats:// or tls:// URL (host:port, no path)")
        return value

    @model_validator(mode="after")
    def _nats_consistent(self) -> Config:
        if self.nats_dup_window_s * 1000 < self.overall_timeout_ms:
            raise ValueError(
                "nats_dup_window_s must cover overall_timeout_ms (a sender retries for that long)"
            )
        return self

    @field_validator("listen_beyond_loopback")
    @classmethod
    def _loopback_unless_opted_in(cls, value: bool, info: ValidationInfo) -> bool:
        host = info.data.get("sidecar_host")
        if isinstance(host, str) and not value and not is_loopback(host):
            raise ValueError(
                f"sidecar_host {host!r} is not a loopback address; other machines could reach the "
                "webhook, health and metrics: set listen_beyond_loopback = true to mean it"
            )
        return value

    @field_validator("tier_order")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("tiers may appear only once")
        return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only reaches this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


KEYS: tuple[str, ...] = tuple(Config.model_fields)
_LIST_KEYS = frozenset({"tier_order", "allow"})


@dataclass(frozen=True, slots=True)
class Loaded:
    """A loaded configuration, where each value came from, and the paths it was read from."""

    config: Config
    sources: Mapping[str, str]
    home: Path
    file: Path
    env: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, Any] = field(default_factory=dict)


def default_home(env: Mapping[str, str]) -> Path:
    """``MCP_CASCADE_HOME`` or ``~/.mcp-cascade``."""
    raw = env.get(ENV_PREFIX + "HOME")
    return Path(raw).expanduser() if raw else Path(env.get("HOME", "~")).expanduser() / ".mcp-cascade"


def resolve_home(flag: str | Path | None, env: Mapping[str, str]) -> Path:
    """The home directory: flag > environment > default."""
    return Path(flag).expanduser().resolve() if flag else default_home(env).resolve()


def _env_value(key: str, raw: str) -> Any:
    if key in _LIST_KEYS:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def load_config(
    home: Path,
    env: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
) -> Loaded:
    """Read config.toml under ``home``, then the environment, then ``flags``.

    Raises ConfigError naming the first bad key and where its value came from.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(KEYS, "default")
    path = home / "config.toml"
    try:
        file_values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        file_values = {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), f"cannot be read: {exc}") from exc
    for key, value in file_values.items():
        if key not in KEYS:
            raise ConfigError(key, f"unknown key in {path}")
        values[key] = tuple(value) if isinstance(value, list) else value
        sources[key] = f"file {path}"
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        if name in env:
            values[key] = _env_value(key, env[name])
            sources[key] = f"env {name}"
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key not in KEYS:
            raise ConfigError(key, "unknown flag")
        values[key] = value
        sources[key] = "flag --" + key.replace("_", "-")
    try:
        config = Config.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "config"
        where = sources.get(key, "")
        raise ConfigError(key, f"{first['msg']} (from {where})") from exc
    own_env = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    return Loaded(config, sources, home, path, own_env, given)


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
        except ConfigError as exc:
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
                callback(new.config)
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
