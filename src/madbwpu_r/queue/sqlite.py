"""SQLite backend: the embedded default, in the environment's own state.sqlite.

WAL lets readers run beside the one writer; claims run in BEGIN IMMEDIATE so two processes
never lease the same row; a lease is just a `lease_until` timestamp.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from madbwpu_r.queue._sql import SCHEMA, SQLQueue
from madbwpu_r.queue.errors import QueueConfigError, QueueError, QueueUnavailable
from madbwpu_r.queue.port import DEFAULT_LEASE, RawJob, RetryPolicy

__all__ = ["SQLiteQueue"]


class SQLiteQueue(SQLQueue):
    _table = "queue_jobs"
    _workers_table = "queue_workers"
    _mark = "?"

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
        schema = SCHEMA.format(
            t=self._table, w=self._workers_table, blob="BLOB", real="REAL", int64="INTEGER"
        )
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write() as conn:
                for statement in schema.split(";"):
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
            path = getattr(self, "path", "?")
            raise QueueUnavailable(f"sqlite queue file {path}: {exc}") from None

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

    # ---- claim ------------------------------------------------------------------------------

    def _claim(
        self, queues: list[str], n: int, lease: float, consumer: str, now: float
    ) -> list[RawJob]:
        """Expired leases first, then ready jobs; the write lock keeps claimers apart."""
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
