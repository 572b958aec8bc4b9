"""The receiving side: `mcp-cascade serve`, one per Claude Code session."""
