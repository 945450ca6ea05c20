"""The embedded metadata store: one SQLite file per environment, in WAL mode.

Each thread has its own connection; a unit of work is `BEGIN IMMEDIATE`, so two writers never
deadlock on a lock upgrade, and `synchronous=FULL`, so a 202 survives even a power cut.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from madbwpu_r.store._sql import SQLStore
from madbwpu_r.store.errors import StoreConfigError, StoreError, StoreUnavailable

__all__ = ["SQLiteMetadataStore"]


class SQLiteMetadataStore(SQLStore):
    _prefix = ""
    _mark = "?"

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0, create: bool = True):
        self.path = Path(path).resolve()
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not create and not self.path.exists():
            raise StoreConfigError(f"no store at {self.path}")
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._transaction() as conn:
                self._create(conn, "REAL", _SERIAL)

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> SQLiteMetadataStore:
        path = url.split("://", 1)[1].split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise StoreConfigError(f"a sqlite store URL needs a file path: {url!r}")
        try:
            timeout = float(options.pop("busy_timeout", 30.0))
        except ValueError:
            raise StoreConfigError(f"busy_timeout must be a number of seconds in {url!r}") from None
        if options:
            raise StoreConfigError(f"unknown sqlite store options: {', '.join(sorted(options))}")
        return cls(path, busy_timeout=timeout)

    # ---- plumbing ---------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc) or "unable to open" in str(exc):
                raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from None
            raise StoreError(f"sqlite store {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        yield self._conn()

    def _columns(self, conn: Any, table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()


_SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"
