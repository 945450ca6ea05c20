"""Where a log's tables live: a SQLite file (embedded) or a PostgreSQL schema (scaled out).

Until the store port gives the audit module its unit of work, a log opens the same database the
store uses (the environment's `state.sqlite`, or its PostgreSQL schema) through this small
wrapper; the SQL itself is in `_sql` and takes any transaction on that database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from madbwpu_r.audit import _sql
from madbwpu_r.audit._sql import Dialect

__all__ = ["AuditDB", "AuditStoreError", "database_exists", "open_db"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class AuditStoreError(Exception):
    """The database behind a log failed or cannot be reached."""


class AuditDB:
    dialect: Dialect

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def read(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def ddl(self) -> contextlib.AbstractContextManager[Any]:
        """A transaction for `CREATE ... IF NOT EXISTS` (SQLite's write lock serialises it)."""
        return self.transaction()

    def close(self) -> None:
        raise NotImplementedError


class SQLiteDB(AuditDB):
    dialect = _sql.SQLITE

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._fds: list[int] = []
        with self.transaction() as conn:
            _sql.create_tables(conn, self.dialect)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=60, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # an appended entry survives a power cut
                conn.execute("PRAGMA busy_timeout=60000")
            except sqlite3.Error as exc:
                raise AuditStoreError(f"cannot open {self.path}: {exc}") from None
            self._local.conn = conn
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _queued(self) -> Iterator[None]:
        """Writers of this file queue on a kernel lock first: it wakes the next one the moment
        the lock is free, where SQLite's busy handler sleeps up to 100 ms between retries, so
        several appending processes keep the disk busy instead of sleeping. SQLite's own lock
        still guarantees correctness; a killed holder's lock goes with its process."""
        fd = getattr(self._local, "lock_fd", None)
        if fd is None:
            fd = self._local.lock_fd = os.open(
                f"{self.path}-writers.lock", os.O_RDWR | os.O_CREAT, 0o644
            )
            self._fds.append(fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._queued():
            with self._transaction() as conn:
                yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise AuditStoreError(f"audit store {self.path}: {exc}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN")  # one snapshot for the whole read
            yield conn
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit store {self.path}: {exc}") from None
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        for fd in self._fds:
            os.close(fd)
        self._all.clear()
        self._fds.clear()
        self._local = threading.local()


class PostgresDB(AuditDB):
    dialect = _sql.POSTGRES

    def __init__(self, conninfo: str, schema: str = "public"):
        import psycopg

        if not _IDENT.match(schema):
            raise AuditStoreError(f"bad postgres schema name {schema!r}")
        self._psycopg = psycopg
        self.dialect = replace(_sql.POSTGRES, prefix=f'"{schema}".')
        self._schema = schema
        self._lock = threading.RLock()
        try:
            self._db = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise AuditStoreError(f"postgres audit store unreachable: {exc}") from None
        with self.ddl() as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            _sql.create_tables(conn, self.dialect)

    @contextlib.contextmanager
    def ddl(self) -> Iterator[Any]:
        """PostgreSQL's `CREATE ... IF NOT EXISTS` races between processes (a duplicate
        `pg_type` row), so it runs under the schema's advisory lock: the metadata store's own
        key (`store/postgres.py`), as both create the audit tables in one schema."""
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("store:" + self._schema,))
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock:
            try:
                with self._db.transaction():
                    yield self._db
            except self._psycopg.Error as exc:
                raise AuditStoreError(f"postgres audit store: {exc}") from None

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        with self._lock:
            try:
                with self._db.transaction():
                    self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield self._db
            except self._psycopg.Error as exc:
                raise AuditStoreError(f"postgres audit store: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


# The metadata store's own options (`busy_timeout` on SQLite, these on PostgreSQL): a log opened
# on a store's URL takes that URL as it is and leaves them to the store.
_PG_STORE_OPTIONS = ("pool_size", "pool_timeout")


def _sqlite_path(url: str) -> Path:
    return Path(url.split("?", 1)[0].removeprefix("sqlite://"))


def database_exists(url: str) -> bool:
    """Whether opening `url` finds a database rather than makes one: a SQLite file must be
    there already; a server's schema is made (empty) when it is first opened."""
    return urlsplit(url).scheme != "sqlite" or _sqlite_path(url).exists()


def open_db(url: str) -> AuditDB:
    """`sqlite:///PATH` or `postgresql://...?schema=NAME`: any metadata store URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return SQLiteDB(_sqlite_path(url))
    if parts.scheme in ("postgresql", "postgres"):
        options = dict(parse_qsl(parts.query))
        schema = options.pop("schema", "public")
        for name in _PG_STORE_OPTIONS:
            options.pop(name, None)
        base = url.split("?", 1)[0]
        return PostgresDB(base + ("?" + urlencode(options) if options else ""), schema)
    raise AuditStoreError(f"{url!r}: an audit store is sqlite:///PATH or postgresql://...")
