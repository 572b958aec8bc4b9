"""The sending side: the cascade of tiers that carries a response to a session."""
