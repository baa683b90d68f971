"""Understudy: a hot-standby pair for a crypto market-making engine."""

__version__ = "0.1.0"
