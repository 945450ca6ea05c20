"""PostgreSQL backend: the SQLite design on a server, claims with FOR UPDATE SKIP LOCKED.

Rows, states, fencing receipts and timestamp leases are those of the SQLite backend (shared
in `_sql`); SKIP LOCKED lets concurrent claimers pass over each other's rows instead of
queueing behind them. Tables live in the schema named by `?schema=` (default `public`),
prefixed `queue_` (`queue_jobs`, and `queue_workers` for worker presence).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg

from madbwpu_r.queue._sql import SCHEMA, SQLQueue
from madbwpu_r.queue.errors import QueueConfigError, QueueError, QueueUnavailable
from madbwpu_r.queue.port import DEFAULT_LEASE, RawJob, RetryPolicy

__all__ = ["PostgresQueue"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresQueue(SQLQueue):
    _mark = "%s"

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
        self._table = f'"{schema}".queue_jobs'
        self._workers_table = f'"{schema}".queue_workers'
        ddl = SCHEMA.format(
            t=self._table,
            w=self._workers_table,
            blob="BYTEA",
            real="DOUBLE PRECISION",
            int64="BIGINT",
        )
        with self._errors():
            self._db = psycopg.connect(conninfo, autocommit=True)
            with self._db.transaction():
                # Concurrent first opens of one schema would race on CREATE ... IF NOT EXISTS.
                self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
                self._db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                for statement in ddl.split(";"):
                    self._db.execute(statement)

    @classmethod
    def from_url(
        cls, url: str, options: dict[str, str], *, policy: RetryPolicy, lease: float
    ) -> PostgresQueue:
        schema = options.pop("schema", "public")
        base = url.split("?", 1)[0]
        conninfo = base + ("?" + urlencode(options) if options else "")
        return cls(conninfo, schema, policy=policy, lease=lease)

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

    # ---- claim ------------------------------------------------------------------------------

    def _claim(
        self, queues: list[str], n: int, lease: float, consumer: str, now: float
    ) -> list[RawJob]:
        sql = self._sql(
            "WITH picked AS (SELECT id FROM {t} WHERE queue = ANY(?) AND"
            " ((state = 'queued' AND run_at <= ?) OR"
            "  (state = 'running' AND lease_until <= ?))"
            " ORDER BY priority DESC, run_at LIMIT ? FOR UPDATE SKIP LOCKED)"
            " UPDATE {t} AS j SET state = 'running', attempts = j.attempts + 1,"
            " token = j.token + 1, lease_until = ?, consumer = ?, updated_at = ?"
            " FROM picked WHERE j.id = picked.id"
            " RETURNING j.id, j.queue, j.payload, j.attempts, j.max_attempts,"
            " j.priority, j.enqueued_at, j.token, j.run_at"
        )
        with self._write() as db:
            rows = db.execute(sql, (queues, now, now, n, now + lease, consumer, now)).fetchall()
        rows.sort(key=lambda r: (-r[5], r[8]))
        return [RawJob(r[0], r[1], bytes(r[2]), *r[3:8]) for r in rows]
