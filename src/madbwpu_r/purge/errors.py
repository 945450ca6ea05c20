"""The purger's own exceptions. An unreachable edge or Redis is never one: it is in the report."""

from __future__ import annotations

__all__ = ["PurgeConfigError", "PurgeError"]


class PurgeError(Exception):
    """Base of every error raised by madbwpu_r.purge."""


class PurgeConfigError(PurgeError, ValueError):
    """A target URL with an unknown scheme, or a backend whose driver is missing (with a hint)."""
