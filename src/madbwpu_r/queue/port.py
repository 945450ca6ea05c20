"""The queue port: one interface, shared policy here, small private primitives per backend.

Policy that must not drift between backends lives in `Queue` once: argument checks, payload
(de)serialisation with orjson, lease defaults, exponential backoff with jitter and the
dead-letter decision. A backend only moves rows/entries (`_insert`, `_claim`, `_extend`,
`_complete`, `_retry`, `_bury`, `_release`, `_expire`, ...) and maps its driver's errors in `_errors()`.

Presence: a worker `announce`s itself and the queues it serves with a time to live, again at
every lease renewal, and `retire`s on a clean exit; `workers(queue)` counts the announcements
not yet expired. Worker counts thus come from the engine every process shares, never from a
file one process writes for another.

Fencing: every claim hands out a fresh receipt (a per-job claim counter). `ack`, `nack`,
`heartbeat` and `release` act only while the receipt is current, so a worker that lost its
lease cannot complete a job another worker has claimed since.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import math
import random
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from madbwpu_r.queue.errors import InvalidJob

__all__ = [
    "DEFAULT_LEASE",
    "STATES",
    "Depth",
    "Job",
    "JobInfo",
    "PermanentJobError",
    "Queue",
    "RetryPolicy",
]

DEFAULT_LEASE = 10.0
STATES = ("scheduled", "ready", "running", "succeeded", "dead")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_KEY = 256
_JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_WORKER = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


class PermanentJobError(Exception):
    """A handler's verdict that no retry can help (invalid input): the job is dead at once.

    Raise it for faults in the job itself; anything else a handler raises is taken as a fault
    of the moment (an engine or a peer down) and retried with backoff.
    """


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job. `receipt` is the backend's fencing token for this one claim."""

    id: str
    queue: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    priority: int
    enqueued_at: float
    lease: float = DEFAULT_LEASE
    receipt: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    queue: str
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None
    result: dict[str, Any] | None
    enqueued_at: float
    updated_at: float
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Depth:
    ready: int
    in_flight: int
    scheduled: int
    dead: int
    oldest_ready_age: float  # seconds; 0.0 when nothing is ready


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry budget and backoff shared by every backend."""

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0

    def backoff(self, attempt: int) -> float:
        """Equal jitter: half the exponential step is fixed, half random, so retries spread."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2.0, ceiling)

    def exhausted(self, attempt: int, max_attempts: int) -> bool:
        return attempt >= max_attempts


class RawJob(NamedTuple):
    """What a backend's `_claim` returns; the port decodes it into a `Job`."""

    id: str
    queue: str
    payload: bytes | dict[str, Any]  # JSON, or already decoded with the rest of the reply
    attempt: int
    max_attempts: int
    priority: int
    enqueued_at: float
    receipt: Any


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise InvalidJob(f"payload is not JSON-serialisable: {exc}") from None


def loads(data: bytes | str | None) -> Any:
    return None if data is None else orjson.loads(data)


def new_job_id() -> str:
    return uuid.uuid4().hex


class Queue(abc.ABC):
    """A durable, lease-based, at-least-once job queue."""

    def __init__(self, *, policy: RetryPolicy | None = None, lease: float = DEFAULT_LEASE):
        self.policy = policy or RetryPolicy()
        self.default_lease = lease

    # ---- public API -------------------------------------------------------------------------

    def enqueue(
        self,
        queue: str,
        payload: dict[str, Any],
        idempotency_key: str | None = None,
        delay: float | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        job_id: str | None = None,
    ) -> str:
        """Add a job; with an idempotency key already used on this queue, return that job's id.

        `job_id` lets the caller name the job (an outbox relay re-delivering the same row):
        enqueueing an id the queue already holds changes nothing and returns that id.
        """
        _check_queue(queue)
        if not isinstance(payload, dict):
            raise InvalidJob("payload must be a JSON object (dict)")
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= _MAX_KEY
        ):
            raise InvalidJob(f"idempotency_key must be a string of 1..{_MAX_KEY} characters")
        delay = float(delay or 0.0)
        if not math.isfinite(delay) or delay < 0:
            raise InvalidJob("delay must be a finite number of seconds >= 0")
        if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > 1000:
            raise InvalidJob("priority must be an integer in -1000..1000")
        if job_id is not None and (not isinstance(job_id, str) or not _JOB_ID.match(job_id)):
            raise InvalidJob("job_id must be 1..64 characters of A-Z a-z 0-9 _ . : -")
        if max_attempts is None:
            max_attempts = self.policy.max_attempts
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidJob("max_attempts must be an integer >= 1")
        data = dumps(payload)
        now = time.time()
        with self._errors():
            return self._insert(
                job_id or new_job_id(),
                queue,
                data,
                idempotency_key,
                now + delay,
                now,
                priority,
                max_attempts,
            )

    def claim(
        self,
        queues: Sequence[str] | str,
        n: int = 1,
        lease: float | None = None,
        consumer: str = "worker",
    ) -> list[Job]:
        """Lease up to n jobs, highest priority first; expired leases are taken over."""
        names = [queues] if isinstance(queues, str) else list(queues)
        for name in names:
            _check_queue(name)
        if n < 1:
            return []
        lease = float(lease or self.default_lease)
        if lease <= 0:
            raise InvalidJob("lease must be > 0 seconds")
        now = time.time()
        with self._errors():
            raws = self._claim(names, n, lease, consumer, now)
        jobs = []
        for raw in raws:
            payload = raw.payload if isinstance(raw.payload, dict) else loads(raw.payload)
            job = Job(
                raw.id,
                raw.queue,
                payload,
                raw.attempt,
                raw.max_attempts,
                raw.priority,
                raw.enqueued_at,
                lease,
                raw.receipt,
            )
            if job.attempt > job.max_attempts:
                # Every allowed attempt was delivered and none finished: its workers died.
                self._dead(job, f"lease expired {job.max_attempts} times (worker lost)", now)
            else:
                jobs.append(job)
        return jobs

    def heartbeat(self, job: Job) -> bool:
        """Renew the job's lease; False means the lease was lost (another claim superseded it)."""
        return self.heartbeat_many([job])[0]

    def heartbeat_many(self, jobs: Sequence[Job]) -> list[bool]:
        if not jobs:
            return []
        with self._errors():
            return self._extend(list(jobs), time.time())

    def ack(self, job: Job, result: dict[str, Any] | None = None) -> bool:
        """Mark the job succeeded; False (and no change) when this claim is no longer current."""
        return self.ack_many([(job, result)])[0]

    def ack_many(self, items: Sequence[tuple[Job, dict[str, Any] | None]]) -> list[bool]:
        """Acknowledge several jobs in one round trip."""
        if not items:
            return []
        encoded = [(job, None if result is None else dumps(result)) for job, result in items]
        with self._errors():
            return self._complete(encoded, time.time())

    def nack(self, job: Job, error: str, retry: bool = True) -> bool:
        """Record a failure: retry after backoff, or dead-letter when out of attempts/`retry=False`."""
        now = time.time()
        error = str(error)[:4000]
        if retry and not self.policy.exhausted(job.attempt, job.max_attempts):
            with self._errors():
                return self._retry(job, error, now + self.policy.backoff(job.attempt), now)
        return self._dead(job, error, now)

    def fail(self, job: Job, exc: BaseException) -> bool:
        """Settle a handler's exception: dead at once if permanent, else retried with backoff.

        A permanent error is recorded as its message alone (it is written for the user, e.g.
        the bad line of a file); a transient one with its type, for the operator.
        """
        if isinstance(exc, PermanentJobError):
            return self.nack(job, str(exc) or type(exc).__name__, retry=False)
        return self.nack(job, f"{type(exc).__name__}: {exc}", retry=True)

    def release(self, job: Job) -> bool:
        """Give a claimed, not started job back at once, without spending an attempt."""
        with self._errors():
            return self._release(job, time.time())

    def expire_leases(self, consumer: str, queues: Sequence[str]) -> int:
        """End every lease `consumer` holds on `queues` now, so the next claim takes them over.

        For a supervisor that saw that worker's process die: its jobs run again at once
        instead of after the lease. The attempt stays counted (the job did start), and the
        fencing receipts still stop that worker's ack if it was not dead after all.
        Returns how many leases ended.
        """
        names = list(queues)
        for name in names:
            _check_queue(name)
        if not consumer or not names:
            return 0
        with self._errors():
            return self._expire(str(consumer), names, time.time())

    def sweep_succeeded(self, older_than: float, limit: int = 10_000) -> int:
        """Forget up to `limit` succeeded jobs last updated more than `older_than` s ago.

        Retention: dead, queued and running jobs are never swept. Returns how many went.
        """
        if not math.isfinite(older_than) or older_than < 0:
            raise InvalidJob("older_than must be a finite number of seconds >= 0")
        with self._errors():
            return self._sweep(time.time() - older_than, max(1, int(limit)))

    def announce(self, worker: str, queues: Sequence[str], ttl: float) -> None:
        """Record that `worker` is alive and serves `queues` for the next `ttl` seconds.

        Announcing again renews the record and replaces its queues. A worker that stops
        announcing (killed) drops out of `workers()` once its ttl has run out.
        """
        _check_worker(worker)
        names = list(queues)
        for name in names:
            _check_queue(name)
        if not math.isfinite(ttl) or not 0 < ttl <= 86_400:
            raise InvalidJob("ttl must be a number of seconds in (0, 86400]")
        now = time.time()
        with self._errors():
            self._announce(worker, sorted(set(names)), now + ttl, now)

    def retire(self, worker: str) -> None:
        """Forget `worker`'s presence at once (a clean exit); unknown workers are ignored."""
        _check_worker(worker)
        with self._errors():
            self._retire(worker)

    def workers(self, queue: str) -> int:
        """How many workers announced `queue` and have neither retired nor expired."""
        _check_queue(queue)
        with self._errors():
            return self._workers(queue, time.time())

    def depth(self, queue: str) -> Depth:
        _check_queue(queue)
        with self._errors():
            return self._depth(queue, time.time())

    def get(self, job_id: str) -> JobInfo | None:
        with self._errors():
            return self._get(str(job_id), time.time())

    def list(
        self, queue: str | None = None, state: str | None = None, limit: int = 50
    ) -> builtins.list[JobInfo]:
        """Most recently enqueued first."""
        if queue is not None:
            _check_queue(queue)
        if state is not None and state not in STATES:
            raise InvalidJob(f"state must be one of {', '.join(STATES)}")
        limit = max(1, min(int(limit), 10_000))
        with self._errors():
            return self._list(queue, state, limit, time.time())

    def retry_dead(self, job_id: str) -> bool:
        """Move a dead job back to ready with a fresh attempt budget."""
        with self._errors():
            return self._revive(str(job_id), time.time())

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- shared helpers ---------------------------------------------------------------------

    def _dead(self, job: Job, error: str, now: float) -> bool:
        with self._errors():
            return self._bury(job, error, now)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Backends override to map driver exceptions onto madbwpu_r.queue.errors."""
        yield

    # ---- backend primitives -----------------------------------------------------------------

    @abc.abstractmethod
    def _insert(
        self,
        job_id: str,
        queue: str,
        payload: bytes,
        key: str | None,
        run_at: float,
        now: float,
        priority: int,
        max_attempts: int,
    ) -> str:
        """Insert a job; an id or idempotency key already present returns that job's id."""

    @abc.abstractmethod
    def _claim(
        self, queues: builtins.list[str], n: int, lease: float, consumer: str, now: float
    ) -> builtins.list[RawJob]: ...

    @abc.abstractmethod
    def _extend(self, jobs: builtins.list[Job], now: float) -> builtins.list[bool]: ...

    @abc.abstractmethod
    def _complete(
        self, items: builtins.list[tuple[Job, bytes | None]], now: float
    ) -> builtins.list[bool]: ...

    @abc.abstractmethod
    def _retry(self, job: Job, error: str, run_at: float, now: float) -> bool: ...

    @abc.abstractmethod
    def _bury(self, job: Job, error: str, now: float) -> bool: ...

    @abc.abstractmethod
    def _release(self, job: Job, now: float) -> bool: ...

    @abc.abstractmethod
    def _expire(self, consumer: str, queues: builtins.list[str], now: float) -> int: ...

    @abc.abstractmethod
    def _announce(self, worker: str, queues: builtins.list[str], until: float, now: float) -> None:
        """Replace `worker`'s presence by one valid until `until` on `queues`."""

    @abc.abstractmethod
    def _retire(self, worker: str) -> None: ...

    @abc.abstractmethod
    def _workers(self, queue: str, now: float) -> int: ...

    @abc.abstractmethod
    def _depth(self, queue: str, now: float) -> Depth: ...

    @abc.abstractmethod
    def _get(self, job_id: str, now: float) -> JobInfo | None: ...

    @abc.abstractmethod
    def _list(
        self, queue: str | None, state: str | None, limit: int, now: float
    ) -> builtins.list[JobInfo]: ...

    @abc.abstractmethod
    def _revive(self, job_id: str, now: float) -> bool: ...

    @abc.abstractmethod
    def _sweep(self, before: float, limit: int) -> int:
        """Delete succeeded jobs with `updated_at < before`, at most `limit`."""


def _check_queue(name: str) -> None:
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise InvalidJob("queue name must be 1..64 characters of A-Z a-z 0-9 _ . -")


def _check_worker(name: str) -> None:
    if not isinstance(name, str) or not _WORKER.match(name):
        raise InvalidJob("worker name must be 1..128 characters of A-Z a-z 0-9 _ . : @ -")
