"""What the SQL backends share: one table design, fenced updates and the reads, written once.

SQLite and PostgreSQL hold the same rows (state `queued` is reported as `scheduled` or `ready`
by comparing `run_at` with now; `token` counts claims and is the fencing receipt), so every
statement here is written once with `?` placeholders and a `{t}` table name, which `_sql`
turns into the backend's own. A backend brings only what really differs: its connection and
transactions (`_write`, `_transaction`), its column types, its claim statement and the mapping
of its driver's errors. Worker presence is a second table `{w}`, one row per worker and queue
with the time it expires.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from madbwpu_r.queue.port import DEFAULT_LEASE, Depth, Job, JobInfo, Queue, RetryPolicy, loads

# Column types differ ({blob}, {real}, {int64}); names, defaults and indexes must not.
SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    payload {blob} NOT NULL,
    state TEXT NOT NULL,                -- queued | running | succeeded | dead
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at {real} NOT NULL,             -- when a queued job becomes ready
    lease_until {real},
    token {int64} NOT NULL DEFAULT 0,   -- claim counter: the fencing receipt
    consumer TEXT,
    idempotency_key TEXT,
    last_error TEXT,
    result {blob},
    enqueued_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS queue_jobs_idempotency
    ON {t} (queue, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_jobs_ready ON {t} (queue, state, priority DESC, run_at);
CREATE INDEX IF NOT EXISTS queue_jobs_lease ON {t} (state, lease_until);
CREATE INDEX IF NOT EXISTS queue_jobs_recent ON {t} (enqueued_at);
CREATE TABLE IF NOT EXISTS {w} (
    worker TEXT NOT NULL,
    queue TEXT NOT NULL,
    expires_at {real} NOT NULL,         -- presence: counted until then unless renewed
    PRIMARY KEY (worker, queue)
);
CREATE INDEX IF NOT EXISTS queue_workers_live ON {w} (queue, expires_at)
"""

_INSERT = (
    "INSERT INTO {t} (id, queue, payload, state, priority, max_attempts, run_at,"
    " idempotency_key, enqueued_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_INFO = (
    "SELECT id, queue, payload, state, attempts, max_attempts, last_error, result, enqueued_at,"
    " updated_at, priority, run_at FROM {t}"
)
_FENCE = "id = ? AND token = ? AND state = 'running'"


class SQLQueue(Queue):
    """A `Queue` over a `{t}` and a `{w}` table; subclasses set `_db`, the tables and `_mark`."""

    _db: Any
    _table: str  # the (qualified) table name put in for {t}
    _workers_table: str  # the (qualified) presence table put in for {w}
    _mark: str  # the driver's placeholder put in for ?

    def __init__(self, *, policy: RetryPolicy | None = None, lease: float = DEFAULT_LEASE):
        super().__init__(policy=policy, lease=lease)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- what a backend provides ------------------------------------------------------------

    @abc.abstractmethod
    def _write(self) -> contextlib.AbstractContextManager[Any]:
        """One write transaction on the queue's own connection, yielding that connection."""

    # ---- plumbing ---------------------------------------------------------------------------

    def _sql(self, text: str) -> Any:
        text = text.replace("{t}", self._table).replace("{w}", self._workers_table)
        return text.replace("?", self._mark)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        """Reads need no transaction, only the connection to themselves."""
        with self._lock:
            yield self._db

    def _fenced(self, sql: str, args: list[tuple[Any, ...]]) -> list[bool]:
        """Run one guarded UPDATE per job in one transaction; True where it hit its row."""
        statement = self._sql(sql)
        with self._write() as db:
            return [db.execute(statement, a).rowcount == 1 for a in args]

    # ---- primitives -------------------------------------------------------------------------

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
        args = (job_id, queue, payload, priority, max_attempts, run_at, key, now, now)
        with self._write() as db:
            rows = db.execute(self._sql(_INSERT), args).fetchall()
            if rows:
                return str(rows[0][0])
            # The id, or the idempotency key on this queue, was used before: hand back that job.
            sql = self._sql(
                "SELECT id FROM {t} WHERE id = ? OR (queue = ? AND idempotency_key = ?)"
            )
            return str(db.execute(sql, (job_id, queue, key)).fetchone()[0])

    def _extend(self, jobs: list[Job], now: float) -> list[bool]:
        sql = f"UPDATE {{t}} SET lease_until = ? WHERE {_FENCE}"
        return self._fenced(sql, [(now + job.lease, job.id, job.receipt) for job in jobs])

    def _complete(self, items: list[tuple[Job, bytes | None]], now: float) -> list[bool]:
        sql = (
            "UPDATE {t} SET state = 'succeeded', result = ?, lease_until = NULL,"
            f" updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced(sql, [(res, now, job.id, job.receipt) for job, res in items])

    def _retry(self, job: Job, error: str, run_at: float, now: float) -> bool:
        sql = (
            "UPDATE {t} SET state = 'queued', run_at = ?, lease_until = NULL,"
            f" last_error = ?, updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced(sql, [(run_at, error, now, job.id, job.receipt)])[0]

    def _bury(self, job: Job, error: str, now: float) -> bool:
        sql = (
            "UPDATE {t} SET state = 'dead', lease_until = NULL, last_error = ?,"
            f" updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced(sql, [(error, now, job.id, job.receipt)])[0]

    def _release(self, job: Job, now: float) -> bool:
        """Undo the claim's attempt, so a release never counts against the job."""
        sql = (
            "UPDATE {t} SET state = 'queued', attempts = attempts - 1, lease_until = NULL,"
            f" updated_at = ? WHERE {_FENCE}"
        )
        return self._fenced(sql, [(now, job.id, job.receipt)])[0]

    def _expire(self, consumer: str, queues: list[str], now: float) -> int:
        marks = ", ".join("?" * len(queues))
        sql = self._sql(
            "UPDATE {t} SET lease_until = ?, updated_at = ?"
            f" WHERE state = 'running' AND consumer = ? AND queue IN ({marks})"
        )
        with self._write() as db:
            return int(db.execute(sql, (now, now, consumer, *queues)).rowcount)

    def _sweep(self, before: float, limit: int) -> int:
        sql = self._sql(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t}"
            " WHERE state = 'succeeded' AND updated_at < ? LIMIT ?)"
        )
        with self._write() as db:
            return int(db.execute(sql, (before, limit)).rowcount)

    def _revive(self, job_id: str, now: float) -> bool:
        sql = (
            "UPDATE {t} SET state = 'queued', attempts = 0, run_at = ?, updated_at = ?"
            " WHERE id = ? AND state = 'dead'"
        )
        return self._fenced(sql, [(now, now, job_id)])[0]

    def _announce(self, worker: str, queues: list[str], until: float, now: float) -> None:
        insert = self._sql("INSERT INTO {w} (worker, queue, expires_at) VALUES (?, ?, ?)")
        with self._write() as db:
            # Expired rows of every worker go too, so killed workers leave nothing behind.
            db.execute(
                self._sql("DELETE FROM {w} WHERE worker = ? OR expires_at <= ?"), (worker, now)
            )
            for queue in queues:
                db.execute(insert, (worker, queue, until))

    def _retire(self, worker: str) -> None:
        with self._write() as db:
            db.execute(self._sql("DELETE FROM {w} WHERE worker = ?"), (worker,))

    def _workers(self, queue: str, now: float) -> int:
        sql = self._sql("SELECT count(*) FROM {w} WHERE queue = ? AND expires_at > ?")
        with self._read() as db:
            return int(db.execute(sql, (queue, now)).fetchone()[0])

    def _depth(self, queue: str, now: float) -> Depth:
        sql = self._sql(
            "SELECT"
            " count(CASE WHEN state = 'queued' AND run_at <= ? THEN 1 END),"
            " count(CASE WHEN state = 'running' THEN 1 END),"
            " count(CASE WHEN state = 'queued' AND run_at > ? THEN 1 END),"
            " count(CASE WHEN state = 'dead' THEN 1 END),"
            " min(CASE WHEN state = 'queued' AND run_at <= ? THEN run_at END)"
            " FROM {t} WHERE queue = ? AND state IN ('queued', 'running', 'dead')"
        )
        with self._read() as db:
            row = db.execute(sql, (now, now, now, queue)).fetchone()
        oldest = row[4]
        return Depth(row[0], row[1], row[2], row[3], max(0.0, now - oldest) if oldest else 0.0)

    def _get(self, job_id: str, now: float) -> JobInfo | None:
        with self._read() as db:
            row = db.execute(self._sql(f"{_INFO} WHERE id = ?"), (job_id,)).fetchone()
        return None if row is None else _info(row, now)

    def _list(self, queue: str | None, state: str | None, limit: int, now: float) -> list[JobInfo]:
        where: list[str] = []
        args: list[Any] = []
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
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = self._sql(f"{_INFO}{clause} ORDER BY enqueued_at DESC, id LIMIT ?")
        with self._read() as db:
            rows = db.execute(sql, (*args, limit)).fetchall()
        return [_info(row, now) for row in rows]


def _info(row: tuple[Any, ...], now: float) -> JobInfo:
    """Decode a row; orjson reads bytes and memoryview alike, so no per-driver adaptation."""
    job_id, queue, payload, state, attempts, max_attempts, error, result, enq, upd, prio = row[:11]
    if state == "queued":
        state = "scheduled" if row[11] > now else "ready"
    return JobInfo(
        job_id,
        queue,
        loads(payload),
        state,
        attempts,
        max_attempts,
        error,
        loads(result),
        enq,
        upd,
        prio,
    )
