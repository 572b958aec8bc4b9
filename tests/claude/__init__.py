"""Driving the real Claude Code CLI offline: a fake Messages API, a seeded client, a private network."""
