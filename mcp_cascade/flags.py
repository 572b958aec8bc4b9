"""Configuration flags on the command line: one ``--key-name`` per configuration key.

Shared by every command that takes configuration (``serve``, ``send``,
``bridge``, ...), so the command modules need not import the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_cascade.config import Loaded

__all__ = ["add_config_flags", "config_flags", "load"]


def _flag_type(key: str) -> Callable[[str], Any]:
    if key in ("tier_order", "allow"):
        return lambda raw: tuple(p.strip() for p in raw.split(",") if p.strip())
    return str


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--key-name`` flag per configuration key (values are validated by the config model)."""
    from mcp_cascade.config import KEYS, Config

    group = parser.add_argument_group("configuration (flag > environment > config.toml > default)")
    for key in KEYS:
        info = Config.model_fields[key]
        group.add_argument(
            "--" + key.replace("_", "-"),
            dest="cfg_" + key,
            type=_flag_type(key),
            default=None,
            metavar=key.split("_")[-1].upper(),
            help=f"{info.description} (default {info.default})",
        )


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration values given as flags."""
    from mcp_cascade.config import KEYS

    return {key: getattr(args, "cfg_" + key, None) for key in KEYS}


def load(args: argparse.Namespace, env: Mapping[str, str]) -> Loaded:
    """The effective configuration for a command's arguments."""
    from mcp_cascade.config import load_config, resolve_home

    return load_config(resolve_home(getattr(args, "home", None), env), env, config_flags(args))
