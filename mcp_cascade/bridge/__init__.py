"""The Telegram bridge: one bot for many Claude Code sessions (``mcp-cascade bridge``)."""
