"""The store's own exceptions: code above the backends never catches a driver's exception."""

from __future__ import annotations

__all__ = [
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "UnknownJob",
]


class StoreError(Exception):
    """Base of every error raised by madbwpu_r.store."""


class StoreConfigError(StoreError):
    """Bad store URL, unknown scheme or missing driver (the message carries the install hint)."""


class StoreUnavailable(StoreError):
    """The engine cannot be reached or stayed locked too long; retrying may help."""


class UnknownJob(StoreError, LookupError):
    """A write named an ingest job the store has no record of."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no ingest job with id {job_id!r}")
        self.job_id = job_id
