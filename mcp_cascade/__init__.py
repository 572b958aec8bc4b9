"""mcp-cascade: a person's answers from Telegram into the right Claude Code session, effectively once."""

from mcp_cascade.config import Config, load_config
from mcp_cascade.errors import CascadeError, ConfigError, InvalidResponse
from mcp_cascade.response import Response, from_json, make_response

__all__ = [
    "CascadeError",
    "Config",
    "ConfigError",
    "InvalidResponse",
    "Response",
    "from_json",
    "load_config",
    "make_response",
]
