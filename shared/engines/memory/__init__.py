"""The memory engine: every role in one process, no Redis (ENGINE=memory)."""
