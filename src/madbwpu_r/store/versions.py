"""Immutable dataset versions as content-addressed SQLite files in a local directory.

Each version is one read-only file `<digest>.sqlite`, so a reader needs no lock and a version, once
named, can never change. The object-store backend later keeps the same files under the same names.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from madbwpu_r.store.port import Column, VersionInfo

FILTER_OPS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


class QueryError(ValueError):
    """A read asked for something the version cannot answer (unknown column, bad value)."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def version_digest(schema: Sequence[Column], row_count: int, checksum: str) -> str:
    manifest = {
        "schema": [[c.name, c.type] for c in schema],
        "row_count": row_count,
        "checksum": checksum,
    }
    return hashlib.sha256(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)).hexdigest()


class VersionFiles:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._readers: dict[str, VersionReader] = {}
        self._lock = threading.Lock()
        self._sweep()

    def _sweep(self) -> None:
        """Remove the partial files of writers that died (a SIGKILLed worker leaves one)."""
        for part in self.root.glob(".*.part"):
            try:
                pid = int(part.name.split(".")[1])
                os.kill(pid, 0)
            except ProcessLookupError:
                part.unlink(missing_ok=True)
            except (ValueError, IndexError, PermissionError):
                continue

    def path(self, digest: str) -> Path:
        if not digest.isalnum():
            raise QueryError(f"not a version digest: {digest!r}")
        return self.root / f"{digest}.sqlite"

    def write(
        self,
        dataset: str,
        schema: Sequence[Column],
        rows: Iterable[Sequence[Any]],
        on_rows: Callable[[int], None] | None = None,
    ) -> VersionInfo:
        """Write rows to a new file, then name it by its digest; re-writing the same data is a no-op."""
        tmp = self.root / f".{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.part"
        checksum = hashlib.sha256()
        count = 0
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            cols = ", ".join(f"{_quote(c.name)} {c.type.upper()}" for c in schema)
            conn.execute(f"CREATE TABLE rows ({cols})")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            insert = f"INSERT INTO rows VALUES ({', '.join('?' * len(schema))})"
            conn.execute("BEGIN")
            batch: list[Sequence[Any]] = []
            for row in rows:
                checksum.update(orjson.dumps(list(row)))
                checksum.update(b"\n")
                batch.append(row)
                count += 1
                if len(batch) >= 5000:
                    conn.executemany(insert, batch)
                    batch.clear()
                    if on_rows:
                        on_rows(count)
            conn.executemany(insert, batch)
            digest = version_digest(schema, count, checksum.hexdigest())
            schema_json = orjson.dumps([{"name": c.name, "type": c.type} for c in schema]).decode()
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("digest", digest), ("schema", schema_json), ("row_count", str(count))],
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        final = self.path(digest)
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
            dir_fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return VersionInfo(
            dataset=dataset,
            digest=digest,
            row_count=count,
            schema=tuple(schema),
            checksum=checksum.hexdigest(),
            created_at=time.time(),
        )

    def reader(self, version: VersionInfo) -> VersionReader:
        with self._lock:
            reader = self._readers.get(version.digest)
            if reader is None:
                reader = self._readers[version.digest] = VersionReader(
                    self.path(version.digest), version.schema
                )
            return reader


@dataclass(frozen=True)
class Page:
    columns: list[str]
    rows: list[dict[str, Any]]
    next_cursor: str | None


def _coerce(column: Column, raw: str) -> Any:
    try:
        if column.type == "integer":
            return int(raw)
        if column.type == "real":
            return float(raw)
    except ValueError:
        raise QueryError(
            f"{raw!r} is not a valid {column.type} for column {column.name!r}"
        ) from None
    return raw


def encode_cursor(value: Any, rowid: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([value, rowid])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, rowid = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(rowid, int):
            raise ValueError
        return value, rowid
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise QueryError("_after is not a cursor this API returned") from None


class VersionReader:
    """Queries one immutable version file; a connection per thread, opened read-only."""

    def __init__(self, path: Path, schema: Sequence[Column]):
        self.path = path
        self.schema = {c.name: c for c in schema}
        self.names = [c.name for c in schema]
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False
            )
            self._local.conn = conn
        return conn

    def column(self, name: str) -> Column:
        try:
            return self.schema[name]
        except KeyError:
            raise QueryError(
                f"unknown column {name!r}; columns are: {', '.join(self.names)}"
            ) from None

    def page(
        self,
        fields: Sequence[str] | None = None,
        filters: Sequence[tuple[str, str, str]] = (),
        sort: str | None = None,
        descending: bool = False,
        after: str | None = None,
        limit: int = 100,
    ) -> Page:
        names = [self.column(f).name for f in fields] if fields else self.names
        where: list[str] = []
        params: list[Any] = []
        for name, op, raw in filters:
            if op not in FILTER_OPS:
                raise QueryError(
                    f"unknown filter operator {op!r}; use one of {', '.join(FILTER_OPS)}"
                )
            where.append(f"{_quote(self.column(name).name)} {FILTER_OPS[op]} ?")
            params.append(_coerce(self.schema[name], raw))
        sort_sql = _quote(self.column(sort).name) if sort else None
        direction = "DESC" if descending else "ASC"
        cmp = "<" if descending else ">"
        if after is not None:
            value, rowid = decode_cursor(after)
            if sort_sql is None:
                where.append(f"rowid {cmp} ?")
                params.append(rowid)
            elif value is None:
                # NULLs sort first ascending and last descending in SQLite.
                tail = "" if descending else f" OR {sort_sql} IS NOT NULL"
                where.append(f"(({sort_sql} IS NULL AND rowid {cmp} ?){tail})")
                params.append(rowid)
            else:
                tail = f" OR {sort_sql} IS NULL" if descending else ""
                where.append(f"({sort_sql} {cmp} ? OR ({sort_sql} = ? AND rowid {cmp} ?){tail})")
                params.extend([value, value, rowid])
        order = f"{sort_sql} {direction}, rowid {direction}" if sort_sql else f"rowid {direction}"
        select = ", ".join(_quote(n) for n in names)
        sort_expr = sort_sql or "NULL"
        sql = (
            f"SELECT rowid, {sort_expr}, {select} FROM rows"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {order} LIMIT ?"
        )
        params.append(limit + 1)
        fetched = self._conn().execute(sql, params).fetchall()
        more = len(fetched) > limit
        fetched = fetched[:limit]
        rows = [dict(zip(names, r[2:], strict=True)) for r in fetched]
        next_cursor = encode_cursor(fetched[-1][1], fetched[-1][0]) if more else None
        return Page(columns=names, rows=rows, next_cursor=next_cursor)
