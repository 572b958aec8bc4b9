"""mcp-cascade: a person's answers from Telegram into the right Claude Code session, effectively once."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_cascade.config import Config, load_config
    from mcp_cascade.errors import CascadeError, ConfigError, InvalidResponse
    from mcp_cascade.response import Response, from_json, make_response
    from mcp_cascade.send.cascade import Receipt, Sender

__all__ = [
    "CascadeError",
    "Config",
    "ConfigError",
    "InvalidResponse",
    "Receipt",
    "Response",
    "Sender",
    "from_json",
    "load_config",
    "make_response",
]

# Imported on first use: ``mcp-cascade --help`` and every subcommand import only what they use.
_HOME = {
    "Config": "config",
    "load_config": "config",
    "CascadeError": "errors",
    "ConfigError": "errors",
    "InvalidResponse": "errors",
    "Response": "response",
    "from_json": "response",
    "make_response": "response",
    "Sender": "send.cascade",
    "Receipt": "send.cascade",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(f"mcp_cascade.{_HOME[name]}"), name)
    raise AttributeError(f"module 'mcp_cascade' has no attribute {name!r}")
