"""SQLite backend: the embedded default, in the environment's own state.sqlite.

WAL lets readers run beside the one writer; claims run in BEGIN IMMEDIATE so two processes
never lease the same row; a lease is just a `lease_until` timestamp. Stored state `queued`
is reported as `scheduled` or `ready` by comparing `run_at` with now, so no promotion pass.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from madbwpu_r.queue.errors import InvalidJob, QueueConfigError, QueueError, QueueUnavailable
from madbwpu_r.queue.port import (
    DEFAULT_LEASE,
    Depth,
    Job,
    JobInfo,
    Queue,
    RawJob,
    RetryPolicy,
    loads,
)

__all__ = ["SQLiteQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_jobs (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,             -- queued | running | succeeded | dead
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at REAL NOT NULL,            -- when a queued job becomes ready
    lease_until REAL,
    token INTEGER NOT NULL DEFAULT 0, -- claim counter: the fencing receipt
    consumer TEXT,
    idempotency_key TEXT,
    last_error TEXT,
    result BLOB,
    enqueued_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS queue_jobs_idempotency
    ON queue_jobs(queue, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_jobs_ready ON queue_jobs(queue, state, priority DESC, run_at);
CREATE INDEX IF NOT EXISTS queue_jobs_lease ON queue_jobs(state, lease_until);
CREATE INDEX IF NOT EXISTS queue_jobs_recent ON queue_jobs(enqueued_at);
"""

_INFO_COLUMNS = (
    "id, queue, payload, state, attempts, max_attempts, last_error, result, enqueued_at, "
    "updated_at, priority, run_at"
)
_FENCE = "id = ? AND token = ? AND state = 'running'"


class SQLiteQueue(Queue):
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        policy: RetryPolicy | None = None,
        lease: float = DEFAULT_LEASE,
        busy_timeout: float = 10.0,
    ):
        super().__init__(policy=policy, lease=lease)
        self.path = Path(path).resolve()
        self._lock = threading.RLock()
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)

    @classmethod
    def from_url(
        cls, url: str, options: dict[str, str], *, policy: RetryPolicy, lease: float
    ) -> SQLiteQueue:
        path = url.split("://", 1)[1].split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise QueueConfigError(f"sqlite queue URL needs a file path: {url!r}")
        timeout = float(options.pop("busy_timeout", 10.0))
        if options:
            raise QueueConfigError(f"unknown sqlite queue options: {', '.join(options)}")
        return cls(path, policy=policy, lease=lease, busy_timeout=timeout)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise QueueUnavailable(f"sqlite queue busy: {exc}") from None
            raise QueueError(f"sqlite queue: {exc}") from None
        except sqlite3.Error as exc:
            raise QueueError(f"sqlite queue: {exc}") from None
        except OSError as exc:
            raise QueueUnavailable(f"sqlite queue file {getattr(self, 'path', '?')}: {exc}") from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so concurrent claimers serialise cleanly."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _check_tx(self, tx: Any) -> sqlite3.Connection:
        if not isinstance(tx, sqlite3.Connection):
            raise InvalidJob("tx must be an open sqlite3.Connection on the queue's database file")
        files = [row[2] for row in tx.execute("PRAGMA database_list") if row[1] == "main"]
        if not files or Path(files[0]).resolve() != self.path:
            raise InvalidJob(f"tx is not a connection to the queue's database {self.path}")
        return tx

    # ---- primitives -------------------------------------------------------------------------

    def _insert(
        self, job_id: str, queue: str, payload: bytes, key: str | None, run_at: float,
        now: float, priority: int, max_attempts: int, tx: Any,
    ) -> str:
        sql = (
            "INSERT INTO queue_jobs (id, queue, payload, state, priority, max_attempts, run_at,"
            " idempotency_key, enqueued_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING"
        )
        args = (job_id, queue, payload, priority, max_attempts, run_at, key, now, now)
        if tx is not None:
            conn = self._check_tx(tx)
            return self._insert_on(conn, sql, args, job_id, queue, key)
        with self._write() as conn:
            return self._insert_on(conn, sql, args, job_id, queue, key)

    @staticmethod
    def _insert_on(
        conn: sqlite3.Connection, sql: str, args: tuple[Any, ...], job_id: str, queue: str,
        key: str | None,
    ) -> str:
        if conn.execute(sql, args).rowcount == 1:
            return job_id
        row = conn.execute(
            "SELECT id FROM queue_jobs WHERE queue = ? AND idempotency_key = ?", (queue, key)
        ).fetchone()
        return row[0]

    def _claim(
        self, queues: list[str], n: int, lease: float, consumer: str, now: float
    ) -> list[RawJob]:
        marks = ",".join("?" * len(queues))
        with self._write() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM queue_jobs WHERE state = 'running' AND lease_until <= ?"
                    f" AND queue IN ({marks}) ORDER BY priority DESC, lease_until LIMIT ?",
                    (now, *queues, n),
                )
            ]
            if len(ids) < n:
                ids += [
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM queue_jobs WHERE queue IN ({marks}) AND state = 'queued'"
                        f" AND run_at <= ? ORDER BY priority DESC, run_at LIMIT ?",
                        (*queues, now, n - len(ids)),
                    )
                ]
            if not ids:
                return []
            rows = conn.execute(
                f"UPDATE queue_jobs SET state = 'running', attempts = attempts + 1,"
                f" token = token + 1, lease_until = ?, consumer = ?, updated_at = ?"
                f" WHERE id IN ({','.join('?' * len(ids))})"
                f" RETURNING id, queue, payload, attempts, max_attempts, priority, enqueued_at,"
                f" token",
                (now + lease, consumer, now, *ids),
            ).fetchall()
        order = {job_id: i for i, job_id in enumerate(ids)}
        rows.sort(key=lambda row: order[row[0]])
        return [RawJob(*row) for row in rows]

    def _fenced(self, jobs_args: list[tuple[str, tuple[Any, ...]]]) -> list[bool]:
        with self._write() as conn:
            return [conn.execute(sql, args).rowcount == 1 for sql, args in jobs_args]

    def _extend(self, jobs: list[Job], now: float) -> list[bool]:
        sql = f"UPDATE queue_jobs SET lease_until = ? WHERE {_FENCE}"
        return self._fenced([(sql, (now + job.lease, job.id, job.receipt)) for job in jobs])

    def _complete(self, items: list[tuple[Job, bytes | None]], now: float) -> list[bool]:
        sql = (
            "UPDATE queue_jobs SET state = 'succeeded', result = ?, lease_until = NULL,"
            f" updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced([(sql, (res, now, job.id, job.receipt)) for job, res in items])

    def _retry(self, job: Job, error: str, run_at: float, now: float) -> bool:
        sql = (
            "UPDATE queue_jobs SET state = 'queued', run_at = ?, lease_until = NULL,"
            f" last_error = ?, updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced([(sql, (run_at, error, now, job.id, job.receipt))])[0]

    def _bury(self, job: Job, error: str, now: float) -> bool:
        sql = (
            "UPDATE queue_jobs SET state = 'dead', lease_until = NULL, last_error = ?,"
            f" updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced([(sql, (error, now, job.id, job.receipt))])[0]

    def _release(self, job: Job, now: float) -> bool:
        sql = (
            "UPDATE queue_jobs SET state = 'queued', attempts = attempts - 1,"
            f" lease_until = NULL, updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced([(sql, (now, job.id, job.receipt))])[0]

    def _revive(self, job_id: str, now: float) -> bool:
        with self._write() as conn:
            return (
                conn.execute(
                    "UPDATE queue_jobs SET state = 'queued', attempts = 0, run_at = ?,"
                    " updated_at = ? WHERE id = ? AND state = 'dead'",
                    (now, now, job_id),
                ).rowcount
                == 1
            )

    def _depth(self, queue: str, now: float) -> Depth:
        with self._lock:
            row = self._db.execute(
                "SELECT"
                " COALESCE(SUM(state = 'queued' AND run_at <= :now), 0),"
                " COALESCE(SUM(state = 'running'), 0),"
                " COALESCE(SUM(state = 'queued' AND run_at > :now), 0),"
                " COALESCE(SUM(state = 'dead'), 0),"
                " MIN(CASE WHEN state = 'queued' AND run_at <= :now THEN run_at END)"
                " FROM queue_jobs WHERE queue = :queue AND state IN ('queued', 'running', 'dead')",
                {"now": now, "queue": queue},
            ).fetchone()
        oldest = row[4]
        return Depth(row[0], row[1], row[2], row[3], max(0.0, now - oldest) if oldest else 0.0)

    def _get(self, job_id: str, now: float) -> JobInfo | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_INFO_COLUMNS} FROM queue_jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return None if row is None else _info(row, now)

    def _list(
        self, queue: str | None, state: str | None, limit: int, now: float
    ) -> list[JobInfo]:
        where, args = [], []
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
        if state == "ready":
            where.append("state = 'queued' AND run_at <= ?")
            args.append(now)
        elif state == "scheduled":
            where.append("state = 'queued' AND run_at > ?")
            args.append(now)
        elif state is not None:
            where.append("state = ?")
            args.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_INFO_COLUMNS} FROM queue_jobs {clause}"
                " ORDER BY enqueued_at DESC, id LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_info(row, now) for row in rows]


def _info(row: tuple[Any, ...], now: float) -> JobInfo:
    (job_id, queue, payload, state, attempts, max_attempts, error, result, enq, upd, prio,
     run_at) = row
    if state == "queued":
        state = "scheduled" if run_at > now else "ready"
    return JobInfo(
        job_id, queue, loads(payload), state, attempts, max_attempts, error, loads(result),
        enq, upd, prio,
    )
