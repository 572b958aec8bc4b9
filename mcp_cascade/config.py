"""One configuration model, loaded in one place, and reloaded while a process runs.

Precedence, lowest first: built-in defaults, ``$MCP_CASCADE_HOME/config.toml``,
``MCP_CASCADE_*`` environment variables, command-line flags. Nothing else in the
package reads ``os.environ``: callers pass the mapping in.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from mcp_cascade.reactions import REACTIONS
from mcp_cascade.watchers import WatcherSetting

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

    @field_validator("legacy_dir", "log_file")
    @classmethod
    def _no_nul(cls, value: Path | None) -> Path | None:
        if value is not None and "\x00" in str(value):
            raise ValueError("a path cannot contain a NUL character")
        return value

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
