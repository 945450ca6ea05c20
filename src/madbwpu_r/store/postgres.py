"""PostgreSQL metadata store: the SQLite design on a server, one schema per environment.

Connections come from a small psycopg pool (a process never holds more than `max_size`);
a unit of work is one server transaction, so the counters row lock orders purges by commit.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import psycopg_pool

from madbwpu_r.store._sql import SQLStore
from madbwpu_r.store.errors import StoreConfigError, StoreError, StoreUnavailable

__all__ = ["PostgresMetadataStore"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresMetadataStore(SQLStore):
    _mark = "%s"

    def __init__(
        self,
        conninfo: str,
        schema: str = "public",
        *,
        max_size: int = 4,
        timeout: float = 10.0,
    ):
        if not _IDENT.match(schema):
            raise StoreConfigError(f"bad postgres schema name {schema!r}: use [a-z_][a-z0-9_]*")
        self.schema = schema
        self._prefix = f'"{schema}".'
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        try:
            self._open(conninfo, schema, max_size, timeout)
        except BaseException:
            self.close()
            raise

    def _open(self, conninfo: str, schema: str, max_size: int, timeout: float) -> None:
        with self._errors():
            self._pool = psycopg_pool.ConnectionPool(
                conninfo,
                min_size=1,
                max_size=max_size,
                timeout=timeout,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
                open=False,
            )
            self._pool.open(wait=True, timeout=timeout)
            with self._transaction() as conn:
                # Concurrent first opens of one schema would race on CREATE ... IF NOT EXISTS.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("store:" + schema,))
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                self._create(conn, "DOUBLE PRECISION", _SERIAL)

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> PostgresMetadataStore:
        schema = options.pop("schema", "public")
        try:
            max_size = int(options.pop("pool_size", 4))
            timeout = float(options.pop("pool_timeout", 10.0))
        except ValueError:
            raise StoreConfigError(
                f"pool_size and pool_timeout must be numbers in {url!r}"
            ) from None
        base = url.split("?", 1)[0]
        conninfo = base + ("?" + urlencode(options) if options else "")
        return cls(conninfo, schema, max_size=max_size, timeout=timeout)

    # ---- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(f"postgres store unreachable: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"postgres store: {_first_line(exc)}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        assert self._pool is not None  # opened in __init__
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        assert self._pool is not None  # opened in __init__
        with self._pool.connection() as conn:
            yield conn

    def _columns(self, conn: Any, table: str) -> set[str]:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s",
            (self.schema, table),
        ).fetchall()
        return {row[0] for row in rows}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_SERIAL = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
