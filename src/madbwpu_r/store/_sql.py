"""What the SQL backends share: the tables and every rule of the store, written once.

SQLite and PostgreSQL hold the same rows; statements are written with `?` placeholders and a
`{p}` table prefix (a schema on PostgreSQL), which `_sql` turns into the backend's own. A
backend brings only its connections and transactions (`_transaction`, `_connection`), its
column types and the mapping of its driver's errors (`_errors`).

The rules:
- a version is published once per job (`ingests.version_digest` is set once);
- the newest accepted ingest wins (`datasets.current_accepted_at` only moves forward);
- an idempotency key names one ingest per dataset;
- a progress report of an older attempt never replaces a newer one's;
- purges are numbered without gaps in one durable epoch, in commit order.
"""

from __future__ import annotations

import abc
import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import orjson

from madbwpu_r.audit import _sql as audit_sql
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.store._ledger_sql import LEDGER_SCHEMA, LedgerSQL
from madbwpu_r.store.errors import UnknownJob
from madbwpu_r.store.ledger import CutoverChain, CutoverRow, LedgerEvent, PointerState
from madbwpu_r.store.port import (
    Column,
    DatasetInfo,
    IngestRecord,
    MetadataStore,
    OutboxMessage,
    OutboxRow,
    Progress,
    UnitOfWork,
    VersionInfo,
)

__all__ = ["ADDED_COLUMNS", "INDEXES", "SCHEMA", "SQLStore", "SQLUnitOfWork"]

# Column types differ ({real}, {serial}); names, constraints and indexes must not.
SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}datasets (
    name TEXT PRIMARY KEY,
    current_digest TEXT,
    current_accepted_at {real} NOT NULL DEFAULT 0,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}versions (
    dataset TEXT NOT NULL,
    digest TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    schema TEXT NOT NULL,
    checksum TEXT NOT NULL,
    created_at {real} NOT NULL,
    file_sha256 TEXT,
    PRIMARY KEY (dataset, digest)
);
CREATE TABLE IF NOT EXISTS {p}ingests (
    job_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    upload TEXT NOT NULL,
    accepted_at {real} NOT NULL,
    version_digest TEXT,
    idempotency_key TEXT,
    upload_removed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS {p}job_progress (
    job_id TEXT PRIMARY KEY,
    attempt INTEGER NOT NULL,
    fraction {real} NOT NULL,
    message TEXT NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}outbox (
    seq {serial},
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at {real} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at {real}
);
CREATE TABLE IF NOT EXISTS {p}counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL,
    label TEXT
)
"""
# Columns added after the first release: a store created before gets them on open.
ADDED_COLUMNS = (
    ("ingests", "idempotency_key", "TEXT"),
    ("ingests", "upload_removed", "INTEGER NOT NULL DEFAULT 0"),
    ("versions", "file_sha256", "TEXT"),
)
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS {i}ingests_idempotency
    ON {p}ingests (dataset, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS {i}ingests_uploads ON {p}ingests (upload_removed, accepted_at);
CREATE INDEX IF NOT EXISTS {i}outbox_pending ON {p}outbox (delivered_at, seq)
"""

_VERSION_COLUMNS = "dataset, digest, row_count, schema, checksum, created_at, file_sha256"
_INGEST_COLUMNS = "job_id, dataset, upload, accepted_at, version_digest, idempotency_key"
_OUTBOX_COLUMNS = "seq, kind, payload, created_at, attempts, last_error"


def _version(row: tuple[Any, ...]) -> VersionInfo:
    dataset, digest, row_count, schema, checksum, created_at, sha256 = row
    return VersionInfo(
        dataset=dataset,
        digest=digest,
        row_count=int(row_count),
        schema=tuple(Column(c["name"], c["type"]) for c in orjson.loads(schema)),
        checksum=checksum,
        created_at=float(created_at),
        sha256=sha256,
    )


def _ingest(row: tuple[Any, ...]) -> IngestRecord:
    job_id, dataset, upload, accepted_at, digest, key = row
    return IngestRecord(job_id, dataset, upload, float(accepted_at), digest, key)


class SQLUnitOfWork(UnitOfWork):
    """Writes on the one connection of an open transaction."""

    def __init__(self, store: SQLStore, conn: Any) -> None:
        self._store = store
        self._conn = conn
        self.now = time.time()

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self._conn.execute(self._store._sql(sql), args)

    def record_ingest(self, record: IngestRecord) -> IngestRecord:
        inserted = self._execute(
            "INSERT INTO {p}ingests (job_id, dataset, upload, accepted_at, idempotency_key)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING job_id",
            (
                record.job_id,
                record.dataset,
                record.upload,
                record.accepted_at,
                record.idempotency_key,
            ),
        ).fetchall()
        if inserted:
            return record
        rows = self._execute(
            f"SELECT {_INGEST_COLUMNS} FROM {{p}}ingests WHERE job_id = ?"
            " OR (dataset = ? AND idempotency_key = ?)",
            (record.job_id, record.dataset, record.idempotency_key),
        ).fetchall()
        return _ingest(rows[0])

    def record_version(self, job_id: str, version: VersionInfo) -> bool:
        row = self._execute(
            "SELECT accepted_at, version_digest FROM {p}ingests WHERE job_id = ? AND dataset = ?",
            (job_id, version.dataset),
        ).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        accepted_at, already = row
        if already is not None:
            return False
        self._execute(
            "UPDATE {p}ingests SET version_digest = ? WHERE job_id = ?", (version.digest, job_id)
        )
        schema = orjson.dumps([{"name": c.name, "type": c.type} for c in version.schema])
        self._execute(
            f"INSERT INTO {{p}}versions AS v ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (dataset, digest) DO UPDATE SET file_sha256 = excluded.file_sha256"
            " WHERE v.file_sha256 IS NULL",  # the first file stays; a legacy row gets one
            (
                version.dataset,
                version.digest,
                version.row_count,
                schema.decode(),
                version.checksum,
                self.now,
                version.sha256,
            ),
        )
        # A slower, older ingest never replaces the data of a newer accepted one.
        self._execute(
            "INSERT INTO {p}datasets AS d (name, current_digest, current_accepted_at, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " current_digest = excluded.current_digest,"
            " current_accepted_at = excluded.current_accepted_at,"
            " updated_at = excluded.updated_at"
            " WHERE excluded.current_accepted_at >= d.current_accepted_at",
            (version.dataset, version.digest, accepted_at, self.now),
        )
        return True

    def set_progress(self, job_id: str, progress: Progress) -> None:
        self._execute(
            "INSERT INTO {p}job_progress AS j (job_id, attempt, fraction, message, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET"
            " attempt = excluded.attempt, fraction = excluded.fraction,"
            " message = excluded.message, updated_at = excluded.updated_at"
            " WHERE excluded.attempt >= j.attempt",
            (job_id, progress.attempt, progress.fraction, progress.message, progress.updated_at),
        )

    def emit(self, message: OutboxMessage) -> int:
        payload = dict(message.payload)
        if message.kind == "purge":
            # The counter row is locked until commit, so purge numbers follow commit order.
            row = self._execute(
                "UPDATE {p}counters SET value = value + 1 WHERE name = 'purge'"
                " RETURNING value, label"
            ).fetchone()
            payload["seq"], payload["epoch"] = int(row[0]), row[1]
        row = self._execute(
            "INSERT INTO {p}outbox (kind, payload, created_at) VALUES (?, ?, ?) RETURNING seq",
            (message.kind, orjson.dumps(payload).decode(), self.now),
        ).fetchone()
        return int(row[0])

    def forget_uploads(self, job_ids: list[str]) -> None:
        sql = "UPDATE {p}ingests SET upload_removed = 1 WHERE job_id = ?"
        for job_id in job_ids:
            self._execute(sql, (job_id,))

    def audit(self, entry: AuditRecord) -> None:
        """Chain `entry` onto this environment's audit log, in this same transaction."""
        audit_sql.append(self._conn, self._store.audit_dialect, [entry], now=self.now)

    # ---- the ledger (store.ledger) ------------------------------------------------------------

    @property
    def _ledger(self) -> LedgerSQL:
        return LedgerSQL(self._conn, self._store._sql, self._store.audit_dialect)

    def put_document(
        self, kind: str, key: str, doc: bytes, *, index: str = "", replace: bool = False
    ) -> bool:
        return self._ledger.put_document(kind, key, doc, index, replace)

    def document(self, kind: str, key: str) -> bytes | None:
        return self._ledger.document(kind, key)

    def record_event(
        self, actor: str, action: str, target: str, outcome: str, evidence: dict[str, Any]
    ) -> LedgerEvent:
        return self._ledger.record_event(actor, action, target, outcome, evidence)

    def switch_pointer(
        self,
        env: str,
        grant_id: str,
        release_id: str,
        grant: bytes,
        manifest: bytes,
        chain: CutoverChain,
    ) -> CutoverRow | None:
        return self._ledger.switch_pointer(env, grant_id, release_id, grant, manifest, chain)


class SQLStore(MetadataStore):
    """A `MetadataStore` over the tables of `SCHEMA`; subclasses set `_prefix` and `_mark`."""

    _prefix: str  # put in for {p}: "" or '"schema".'
    _mark: str  # the driver's placeholder put in for ?

    # ---- what a backend provides ------------------------------------------------------------

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        """One write transaction, yielding its connection; the write lock is taken up front."""

    @abc.abstractmethod
    def _connection(self) -> contextlib.AbstractContextManager[Any]:
        """A connection for reads outside any transaction."""

    @abc.abstractmethod
    def _errors(self) -> contextlib.AbstractContextManager[None]:
        """Map the driver's exceptions onto madbwpu_r.store.errors."""

    # ---- plumbing ---------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text.replace("{p}", self._prefix).replace("?", self._mark)

    @property
    def audit_dialect(self) -> audit_sql.Dialect:
        """How the audit log's SQL (`madbwpu_r.audit._sql`) runs on this store's engine."""
        base = audit_sql.SQLITE if self._mark == "?" else audit_sql.POSTGRES
        return replace(base, prefix=self._prefix)

    @abc.abstractmethod
    def _columns(self, conn: Any, table: str) -> set[str]:
        """The names of a table's columns."""

    def _create(self, conn: Any, real: str, serial: str) -> None:
        """Create or upgrade the tables, inside the caller's transaction."""
        tables = SCHEMA.replace("{real}", real).replace("{serial}", serial)
        ledger = LEDGER_SCHEMA.replace("{real}", real).replace("{serial}", serial)
        for statement in (tables + ";" + ledger).split(";"):
            conn.execute(statement.replace("{p}", self._prefix))
        for table, column, decl in ADDED_COLUMNS:
            if column not in self._columns(conn, table):
                conn.execute(f"ALTER TABLE {self._prefix}{table} ADD COLUMN {column} {decl}")
        for statement in INDEXES.split(";"):
            conn.execute(statement.replace("{p}", self._prefix).replace("{i}", ""))
        conn.execute(
            self._sql(
                "INSERT INTO {p}counters (name, value, label) VALUES ('purge', 0, ?)"
                " ON CONFLICT DO NOTHING"
            ),
            (uuid.uuid4().hex,),
        )
        conn.execute(  # the row whose lock orders the ledger's chained writes (store.ledger)
            self._sql(
                "INSERT INTO {p}counters (name, value, label) VALUES ('ledger', 0, NULL)"
                " ON CONFLICT DO NOTHING"
            )
        )
        audit_sql.create_tables(conn, self.audit_dialect)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._errors(), self._connection() as conn:
            return list(conn.execute(self._sql(sql), args).fetchall())

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._errors(), self._transaction() as conn:
            return int(conn.execute(self._sql(sql), args).rowcount)

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        with self._errors(), self._transaction() as conn:
            yield SQLUnitOfWork(self, conn)

    # ---- reads ------------------------------------------------------------------------------

    def ingest(self, job_id: str) -> IngestRecord | None:
        rows = self._read(f"SELECT {_INGEST_COLUMNS} FROM {{p}}ingests WHERE job_id = ?", (job_id,))
        return _ingest(rows[0]) if rows else None

    def current(self, dataset: str) -> VersionInfo | None:
        columns = ", ".join("v." + c for c in _VERSION_COLUMNS.split(", "))
        rows = self._read(
            f"SELECT {columns} FROM {{p}}datasets d JOIN {{p}}versions v"
            " ON v.dataset = d.name AND v.digest = d.current_digest WHERE d.name = ?",
            (dataset,),
        )
        return _version(rows[0]) if rows else None

    def version(self, dataset: str, digest: str) -> VersionInfo | None:
        rows = self._read(
            f"SELECT {_VERSION_COLUMNS} FROM {{p}}versions WHERE dataset = ? AND digest = ?",
            (dataset, digest),
        )
        return _version(rows[0]) if rows else None

    def versions(self, dataset: str) -> list[VersionInfo]:
        rows = self._read(
            f"SELECT {_VERSION_COLUMNS} FROM {{p}}versions WHERE dataset = ?"
            " ORDER BY created_at, digest",
            (dataset,),
        )
        return [_version(r) for r in rows]

    def datasets(self) -> Iterator[DatasetInfo]:
        columns = ", ".join("v." + c for c in _VERSION_COLUMNS.split(", "))
        rows = self._read(
            "SELECT d.name, (SELECT count(*) FROM {p}versions c WHERE c.dataset = d.name),"
            f" {columns} FROM {{p}}datasets d LEFT JOIN {{p}}versions v"
            " ON v.dataset = d.name AND v.digest = d.current_digest ORDER BY d.name"
        )
        for row in rows:
            current = _version(row[2:]) if row[3] is not None else None
            yield DatasetInfo(name=row[0], current=current, versions=int(row[1]))

    def progress(self, job_id: str) -> Progress | None:
        rows = self._read(
            "SELECT attempt, fraction, message, updated_at FROM {p}job_progress WHERE job_id = ?",
            (job_id,),
        )
        if not rows:
            return None
        attempt, fraction, message, updated_at = rows[0]
        return Progress(int(attempt), float(fraction), message, float(updated_at))

    # ---- outbox -----------------------------------------------------------------------------

    def pending(self, limit: int = 100, kinds: Sequence[str] | None = None) -> list[OutboxRow]:
        where, args = "", tuple[str, ...]()
        if kinds is not None:
            if not kinds:
                return []
            where = f" AND kind IN ({', '.join('?' * len(kinds))})"
            args = tuple(kinds)
        rows = self._read(
            f"SELECT {_OUTBOX_COLUMNS} FROM {{p}}outbox WHERE delivered_at IS NULL{where}"
            " ORDER BY seq LIMIT ?",
            (*args, int(limit)),
        )
        return [
            OutboxRow(int(seq), kind, orjson.loads(payload), float(at), int(attempts), error)
            for seq, kind, payload, at, attempts, error in rows
        ]

    def delivered(self, seq: int) -> None:
        self._write(
            "UPDATE {p}outbox SET delivered_at = ? WHERE seq = ? AND delivered_at IS NULL",
            (time.time(), seq),
        )

    def failed(self, seq: int, error: str) -> None:
        self._write(
            "UPDATE {p}outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
            (error[:2000], seq),
        )

    # ---- retention --------------------------------------------------------------------------

    def kept_uploads(self, before: float, limit: int = 1000) -> list[IngestRecord]:
        rows = self._read(
            f"SELECT {_INGEST_COLUMNS} FROM {{p}}ingests WHERE upload_removed = 0"
            " AND accepted_at < ? ORDER BY accepted_at LIMIT ?",
            (before, int(limit)),
        )
        return [_ingest(r) for r in rows]

    def forget_uploads(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self.unit_of_work() as uow:
            uow.forget_uploads(job_ids)

    def sweep_outbox(self, before: float) -> int:
        return self._write(
            "DELETE FROM {p}outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
            (before,),
        )

    # ---- the ledger (store.ledger) ------------------------------------------------------------

    def document(self, kind: str, key: str) -> bytes | None:
        with self._errors(), self._connection() as conn:
            return LedgerSQL(conn, self._sql, self.audit_dialect).document(kind, key)

    def documents(self, kind: str, index: str | None = None) -> list[bytes]:
        with self._errors(), self._connection() as conn:
            return LedgerSQL(conn, self._sql, self.audit_dialect).documents(kind, index)

    def events(
        self, target: str | None = None, action_prefix: str | None = None
    ) -> list[LedgerEvent]:
        with self._errors(), self._connection() as conn:
            return LedgerSQL(conn, self._sql, self.audit_dialect).events(target, action_prefix)

    def pointer(self, env: str) -> PointerState:
        # One transaction, so the pointer, the log and the grants are one consistent state.
        with self._errors(), self._transaction() as conn:
            return LedgerSQL(conn, self._sql, self.audit_dialect).pointer(env)

    def ping(self) -> None:
        self._read("SELECT 1")
