"""The embedded metadata store: one SQLite file per environment, in WAL mode.

The job queue's SQLite adapter keeps its tables in the same file, so that an accepted write and
its job commit in one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from madbwpu_r.store.port import (
    Column,
    DatasetInfo,
    IngestRecord,
    MetadataStore,
    Progress,
    StoreError,
    VersionInfo,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    current_digest TEXT,
    current_accepted_at REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    dataset TEXT NOT NULL,
    digest TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    schema TEXT NOT NULL,
    checksum TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (dataset, digest)
);
CREATE TABLE IF NOT EXISTS ingests (
    job_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    upload TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    version_digest TEXT
);
CREATE TABLE IF NOT EXISTS job_progress (
    job_id TEXT PRIMARY KEY,
    attempt INTEGER NOT NULL,
    fraction REAL NOT NULL,
    message TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a 202 promises the write and its job survive even a power cut, not only a kill.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _version(row: sqlite3.Row | tuple) -> VersionInfo:
    dataset, digest, row_count, schema, checksum, created_at = row
    return VersionInfo(
        dataset=dataset,
        digest=digest,
        row_count=row_count,
        schema=tuple(Column(c["name"], c["type"]) for c in orjson.loads(schema)),
        checksum=checksum,
        created_at=created_at,
    )


_VERSION_COLUMNS = "dataset, digest, row_count, schema, checksum, created_at"


class SQLiteMetadataStore(MetadataStore):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._local.conn = _connect(self.path)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self.path}: {exc}") from None
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def transaction(self):  # noqa: ANN201 - a context manager yielding the sqlite3 connection
        return self._write()

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from None

    def record_ingest(self, tx: sqlite3.Connection, record: IngestRecord) -> None:
        tx.execute(
            "INSERT INTO ingests (job_id, dataset, upload, accepted_at) VALUES (?, ?, ?, ?)",
            (record.job_id, record.dataset, record.upload, record.accepted_at),
        )

    def ingest(self, job_id: str) -> IngestRecord | None:
        rows = self._read(
            "SELECT job_id, dataset, upload, accepted_at, version_digest FROM ingests WHERE job_id = ?",
            (job_id,),
        )
        return IngestRecord(*rows[0]) if rows else None

    def record_version(self, job_id: str, version: VersionInfo) -> bool:
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT accepted_at, version_digest FROM ingests WHERE job_id = ? AND dataset = ?",
                (job_id, version.dataset),
            ).fetchone()
            if row is None:
                raise KeyError(job_id)
            accepted_at, already = row
            if already is not None:
                return False
            conn.execute(
                "UPDATE ingests SET version_digest = ? WHERE job_id = ?", (version.digest, job_id)
            )
            conn.execute(
                f"INSERT OR IGNORE INTO versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    version.dataset,
                    version.digest,
                    version.row_count,
                    orjson.dumps([{"name": c.name, "type": c.type} for c in version.schema]),
                    version.checksum,
                    now,
                ),
            )
            # A slower, older ingest never replaces the data of a newer accepted one.
            conn.execute(
                """
                INSERT INTO datasets (name, current_digest, current_accepted_at, updated_at)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET
                    current_digest = excluded.current_digest,
                    current_accepted_at = excluded.current_accepted_at,
                    updated_at = excluded.updated_at
                WHERE excluded.current_accepted_at >= datasets.current_accepted_at
                """,
                (version.dataset, version.digest, accepted_at, now),
            )
            return True

    def current(self, dataset: str) -> VersionInfo | None:
        rows = self._read(
            f"SELECT {', '.join('v.' + c for c in _VERSION_COLUMNS.split(', '))} "
            "FROM datasets d JOIN versions v ON v.dataset = d.name AND v.digest = d.current_digest "
            "WHERE d.name = ?",
            (dataset,),
        )
        return _version(rows[0]) if rows else None

    def version(self, dataset: str, digest: str) -> VersionInfo | None:
        rows = self._read(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE dataset = ? AND digest = ?",
            (dataset, digest),
        )
        return _version(rows[0]) if rows else None

    def versions(self, dataset: str) -> list[VersionInfo]:
        rows = self._read(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE dataset = ? ORDER BY created_at",
            (dataset,),
        )
        return [_version(r) for r in rows]

    def datasets(self) -> Iterator[DatasetInfo]:
        names = self._read(
            "SELECT d.name, (SELECT count(*) FROM versions v WHERE v.dataset = d.name) "
            "FROM datasets d ORDER BY d.name"
        )
        for name, count in names:
            yield DatasetInfo(name=name, current=self.current(name), versions=count)

    def set_progress(self, job_id: str, progress: Progress) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO job_progress (job_id, attempt, fraction, message, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET "
                "attempt = excluded.attempt, fraction = excluded.fraction, "
                "message = excluded.message, updated_at = excluded.updated_at "
                "WHERE excluded.attempt >= job_progress.attempt",
                (
                    job_id,
                    progress.attempt,
                    progress.fraction,
                    progress.message,
                    progress.updated_at,
                ),
            )

    def progress(self, job_id: str) -> Progress | None:
        rows = self._read(
            "SELECT attempt, fraction, message, updated_at FROM job_progress WHERE job_id = ?",
            (job_id,),
        )
        return Progress(*rows[0]) if rows else None

    def ping(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
