"""PostgreSQL backend: the SQLite design on a server, claims with FOR UPDATE SKIP LOCKED.

Rows, states, fencing receipts and timestamp leases are those of the SQLite backend; SKIP
LOCKED lets concurrent claimers pass over each other's rows instead of queueing behind them.
Tables live in the schema named by `?schema=` (default `public`), prefixed `queue_`.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg

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

__all__ = ["PostgresQueue"]

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {t} (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    payload BYTEA NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION,
    token BIGINT NOT NULL DEFAULT 0,
    consumer TEXT,
    idempotency_key TEXT,
    last_error TEXT,
    result BYTEA,
    enqueued_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS queue_jobs_idempotency
    ON {t} (queue, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_jobs_ready ON {t} (queue, state, priority DESC, run_at);
CREATE INDEX IF NOT EXISTS queue_jobs_lease ON {t} (state, lease_until);
CREATE INDEX IF NOT EXISTS queue_jobs_recent ON {t} (enqueued_at)
"""

_INFO_COLUMNS = (
    "id, queue, payload, state, attempts, max_attempts, last_error, result, enqueued_at, "
    "updated_at, priority, run_at"
)
_FENCE = "id = %s AND token = %s AND state = 'running'"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresQueue(Queue):
    def __init__(
        self,
        conninfo: str,
        schema: str = "public",
        *,
        policy: RetryPolicy | None = None,
        lease: float = DEFAULT_LEASE,
    ):
        super().__init__(policy=policy, lease=lease)
        if not _IDENT.match(schema):
            raise QueueConfigError(f"bad postgres schema name {schema!r}")
        self.schema = schema
        self._t = f'"{schema}".queue_jobs'
        self._lock = threading.RLock()
        with self._errors():
            self._db = psycopg.connect(conninfo, autocommit=True)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
                for statement in _SCHEMA.format(s=f'"{schema}"', t=self._t).split(";"):
                    self._db.execute(statement)

    @classmethod
    def from_url(
        cls, url: str, options: dict[str, str], *, policy: RetryPolicy, lease: float
    ) -> PostgresQueue:
        schema = options.pop("schema", "public")
        base = url.split("?", 1)[0]
        conninfo = base + ("?" + urlencode(options) if options else "")
        return cls(conninfo, schema, policy=policy, lease=lease)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise QueueUnavailable(f"postgres queue unreachable: {exc}") from None
        except psycopg.Error as exc:
            raise QueueError(f"postgres queue: {exc}") from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock, self._db.transaction():
            yield self._db

    def _sql(self, text: str) -> Any:
        return text.replace("{t}", self._t)

    # ---- primitives -------------------------------------------------------------------------

    def _insert(
        self, job_id: str, queue: str, payload: bytes, key: str | None, run_at: float,
        now: float, priority: int, max_attempts: int, tx: Any,
    ) -> str:
        if tx is not None:
            raise InvalidJob("tx= is only supported by the SQLite queue")
        with self._write() as db:
            row = db.execute(
                self._sql(
                    "INSERT INTO {t} (id, queue, payload, state, priority, max_attempts, run_at,"
                    " idempotency_key, enqueued_at, updated_at)"
                    " VALUES (%s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL"
                    " DO NOTHING RETURNING id"
                ),
                (job_id, queue, payload, priority, max_attempts, run_at, key, now, now),
            ).fetchone()
            if row is None:
                row = db.execute(
                    self._sql("SELECT id FROM {t} WHERE queue = %s AND idempotency_key = %s"),
                    (queue, key),
                ).fetchone()
        return row[0]

    def _claim(
        self, queues: list[str], n: int, lease: float, consumer: str, now: float
    ) -> list[RawJob]:
        with self._write() as db:
            rows = db.execute(
                self._sql(
                    "WITH picked AS (SELECT id FROM {t} WHERE queue = ANY(%s) AND"
                    " ((state = 'queued' AND run_at <= %s) OR"
                    "  (state = 'running' AND lease_until <= %s))"
                    " ORDER BY priority DESC, run_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                    " UPDATE {t} AS j SET state = 'running', attempts = j.attempts + 1,"
                    " token = j.token + 1, lease_until = %s, consumer = %s, updated_at = %s"
                    " FROM picked WHERE j.id = picked.id"
                    " RETURNING j.id, j.queue, j.payload, j.attempts, j.max_attempts,"
                    " j.priority, j.enqueued_at, j.token, j.run_at"
                ),
                (queues, now, now, n, now + lease, consumer, now),
            ).fetchall()
        rows.sort(key=lambda r: (-r[5], r[8]))
        return [RawJob(r[0], r[1], bytes(r[2]), *r[3:8]) for r in rows]

    def _fenced(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[bool]:
        with self._write() as db:
            return [db.execute(self._sql(sql), args).rowcount == 1 for sql, args in statements]

    def _extend(self, jobs: list[Job], now: float) -> list[bool]:
        sql = f"UPDATE {{t}} SET lease_until = %s WHERE {_FENCE}"
        return self._fenced([(sql, (now + job.lease, job.id, job.receipt)) for job in jobs])

    def _complete(self, items: list[tuple[Job, bytes | None]], now: float) -> list[bool]:
        sql = (
            "UPDATE {t} SET state = 'succeeded', result = %s, lease_until = NULL,"
            f" updated_at = %s WHERE {_FENCE}"
        )
        return self._fenced([(sql, (res, now, job.id, job.receipt)) for job, res in items])

    def _retry(self, job: Job, error: str, run_at: float, now: float) -> bool:
        sql = (
            "UPDATE {t} SET state = 'queued', run_at = %s, lease_until = NULL,"
            f" last_error = %s, updated_at = %s WHERE {_FENCE}"
        )
        return self._fenced([(sql, (run_at, error, now, job.id, job.receipt))])[0]

    def _bury(self, job: Job, error: str, now: float) -> bool:
        sql = (
            "UPDATE {t} SET state = 'dead', lease_until = NULL, last_error = %s,"
            f" updated_at = %s WHERE {_FENCE}"
        )
        return self._fenced([(sql, (error, now, job.id, job.receipt))])[0]

    def _release(self, job: Job, now: float) -> bool:
        sql = (
            "UPDATE {t} SET state = 'queued', attempts = attempts - 1, lease_until = NULL,"
            f" updated_at = %s WHERE {_FENCE}"
        )
        return self._fenced([(sql, (now, job.id, job.receipt))])[0]

    def _revive(self, job_id: str, now: float) -> bool:
        sql = (
            "UPDATE {t} SET state = 'queued', attempts = 0, run_at = %s, updated_at = %s"
            " WHERE id = %s AND state = 'dead'"
        )
        return self._fenced([(sql, (now, now, job_id))])[0]

    def _depth(self, queue: str, now: float) -> Depth:
        with self._lock:
            row = self._db.execute(
                self._sql(
                    "SELECT"
                    " count(*) FILTER (WHERE state = 'queued' AND run_at <= %(now)s),"
                    " count(*) FILTER (WHERE state = 'running'),"
                    " count(*) FILTER (WHERE state = 'queued' AND run_at > %(now)s),"
                    " count(*) FILTER (WHERE state = 'dead'),"
                    " min(run_at) FILTER (WHERE state = 'queued' AND run_at <= %(now)s)"
                    " FROM {t} WHERE queue = %(queue)s AND state IN ('queued', 'running', 'dead')"
                ),
                {"now": now, "queue": queue},
            ).fetchone()
        oldest = row[4]
        return Depth(row[0], row[1], row[2], row[3], max(0.0, now - oldest) if oldest else 0.0)

    def _get(self, job_id: str, now: float) -> JobInfo | None:
        with self._lock:
            row = self._db.execute(
                self._sql(f"SELECT {_INFO_COLUMNS} FROM {{t}} WHERE id = %s"), (job_id,)
            ).fetchone()
        return None if row is None else _info(row, now)

    def _list(
        self, queue: str | None, state: str | None, limit: int, now: float
    ) -> list[JobInfo]:
        where, args = [], []
        if queue is not None:
            where.append("queue = %s")
            args.append(queue)
        if state == "ready":
            where.append("state = 'queued' AND run_at <= %s")
            args.append(now)
        elif state == "scheduled":
            where.append("state = 'queued' AND run_at > %s")
            args.append(now)
        elif state is not None:
            where.append("state = %s")
            args.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                self._sql(
                    f"SELECT {_INFO_COLUMNS} FROM {{t}} {clause}"
                    " ORDER BY enqueued_at DESC, id LIMIT %s"
                ),
                (*args, limit),
            ).fetchall()
        return [_info(row, now) for row in rows]


def _info(row: tuple[Any, ...], now: float) -> JobInfo:
    (job_id, queue, payload, state, attempts, max_attempts, error, result, enq, upd, prio,
     run_at) = row
    if state == "queued":
        state = "scheduled" if run_at > now else "ready"
    return JobInfo(
        job_id, queue, loads(bytes(payload)), state, attempts, max_attempts, error,
        loads(bytes(result)) if result is not None else None, enq, upd, prio,
    )
