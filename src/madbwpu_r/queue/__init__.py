"""Durable job queue: `open_queue(url)` picks the backend by URL scheme.

    sqlite:////abs/path/state.sqlite          embedded default (WAL, BEGIN IMMEDIATE claims)
    redis://127.0.0.1:6379/0?prefix=NAME      Redis Streams consumer groups (scale-out)
    postgresql://user@host:5432/db?schema=S   PostgreSQL, FOR UPDATE SKIP LOCKED

Query parameters common to all: lease (s), max_attempts, backoff (base s), backoff_max (s).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from madbwpu_r._drivers import Backend, backend_class
from madbwpu_r.queue.errors import InvalidJob, QueueConfigError, QueueError, QueueUnavailable
from madbwpu_r.queue.port import (
    DEFAULT_LEASE,
    STATES,
    Depth,
    Job,
    JobInfo,
    PermanentJobError,
    Queue,
    RetryPolicy,
)

__all__ = [
    "DEFAULT_LEASE",
    "STATES",
    "Depth",
    "InvalidJob",
    "Job",
    "JobInfo",
    "PermanentJobError",
    "Queue",
    "QueueConfigError",
    "QueueError",
    "QueueUnavailable",
    "RetryPolicy",
    "open_queue",
]

_REDIS = Backend("madbwpu_r.queue.redis", "RedisQueue", ("redis",), "uv add redis")
_POSTGRES = Backend(
    "madbwpu_r.queue.postgres", "PostgresQueue", ("psycopg",), "uv add 'psycopg[binary]'"
)
_BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(
        "madbwpu_r.queue.sqlite", "SQLiteQueue", ("sqlite3",), "a Python built with sqlite3"
    ),
    "redis": _REDIS,
    "rediss": _REDIS,
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
}


def open_queue(url: str, *, lease: float | None = None, policy: RetryPolicy | None = None) -> Queue:
    """Open the queue named by `url`; keyword arguments override the URL's query parameters."""
    cls = backend_class(url, _BACKENDS, "queue", QueueConfigError)
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    try:
        base = RetryPolicy()
        policy = policy or RetryPolicy(
            max_attempts=int(options.pop("max_attempts", base.max_attempts)),
            backoff_base=float(options.pop("backoff", base.backoff_base)),
            backoff_max=float(options.pop("backoff_max", base.backoff_max)),
        )
        lease = float(lease if lease is not None else options.pop("lease", DEFAULT_LEASE))
    except ValueError as exc:
        raise QueueConfigError(f"bad queue option in {url!r}: {exc}") from None
    for name in ("max_attempts", "backoff", "backoff_max", "lease"):
        options.pop(name, None)
    if policy.max_attempts < 1 or policy.backoff_base < 0 or lease <= 0:
        raise QueueConfigError(f"queue options out of range in {url!r}")
    queue: Queue = cls.from_url(url, options, policy=policy, lease=lease)
    return queue
