"""The queue's own exceptions: code above the adapters never catches a driver's exception."""

from __future__ import annotations

__all__ = [
    "QueueError",
    "QueueConfigError",
    "QueueUnavailable",
    "InvalidJob",
]


class QueueError(Exception):
    """Base of every error raised by madbwpu_r.queue."""


class QueueConfigError(QueueError):
    """Bad queue URL, unknown scheme or missing driver (message carries the install hint)."""


class QueueUnavailable(QueueError):
    """The queue's engine cannot be reached or is locked for too long; retrying may help."""


class InvalidJob(QueueError, ValueError):
    """The caller asked for something the queue refuses (bad payload, bad argument)."""
