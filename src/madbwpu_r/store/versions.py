"""Immutable dataset versions as content-addressed SQLite files in a local directory.

Each version is one read-only file `<digest>.sqlite`, so a reader needs no lock and a version, once
named, can never change. The object-store backend later keeps the same files under the same names.

File format 2: `rows(_row INTEGER PRIMARY KEY, c0, c1, ...)` with the user's column names only in
`meta.schema`. No user name ever reaches SQL, so none can shadow the row order (`rowid`, `oid`,
`_rowid_`, `_row`) or clash with another by SQLite's case-insensitive names. Format 1 files
(user names as SQL columns, order by `rowid`) are still read, and replaced when written again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from madbwpu_r.store.port import Column, VersionInfo
from madbwpu_r.store.values import INT64_MAX, parse_integer, parse_real

FILTER_OPS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
FORMAT = "2"
ORDER_COLUMN = "_row"
_MAX_CURSOR_CHARS = 256


class QueryError(ValueError):
    """A read asked for something the version cannot answer; `parameter` names the culprit."""

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


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
        try:
            count, checksum = _write_rows(tmp, schema, rows, on_rows)
            digest = version_digest(schema, count, checksum)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            final = self.path(digest)
            if final.exists() and _file_format(final) == FORMAT:
                tmp.unlink()
            else:  # new, or a format 1 file of the same content: this one replaces it
                os.replace(tmp, final)
                dir_fd = os.open(self.root, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a failed attempt leaves no partial file behind
            raise
        return VersionInfo(
            dataset=dataset,
            digest=digest,
            row_count=count,
            schema=tuple(schema),
            checksum=checksum,
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


def _write_rows(
    path: Path,
    schema: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    on_rows: Callable[[int], None] | None,
) -> tuple[int, str]:
    """Fill a format 2 file; returns the row count and the rows' checksum."""
    checksum = hashlib.sha256()
    count = 0
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        cols = "".join(f", c{i} {c.type.upper()}" for i, c in enumerate(schema))
        conn.execute(f"CREATE TABLE rows ({ORDER_COLUMN} INTEGER PRIMARY KEY{cols})")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        insert = f"INSERT INTO rows VALUES ({', '.join('?' * (len(schema) + 1))})"
        conn.execute("BEGIN")
        batch: list[Sequence[Any]] = []
        for row in rows:
            checksum.update(orjson.dumps(list(row)))
            checksum.update(b"\n")
            count += 1
            batch.append((count, *row))
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
            [
                ("digest", digest),
                ("schema", schema_json),
                ("row_count", str(count)),
                ("format", FORMAT),
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return count, checksum.hexdigest()


def _file_format(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _format_of(conn)
    finally:
        conn.close()


def _format_of(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    return row[0] if row else "1"


@dataclass(frozen=True)
class Page:
    columns: list[str]
    rows: list[dict[str, Any]]
    next_cursor: str | None


def coerce(column: Column, raw: str) -> Any:
    """A filter's text as the column's type, spelled strictly (see `store/values.py`)."""
    if column.type == "integer":
        value: Any = parse_integer(raw)
        if value is None:
            if _DIGITS.fullmatch(raw):
                raise QueryError(
                    f"{_short(raw)} is not an integer between -2^63 and 2^63-1 "
                    f"(column {column.name!r})"
                )
            raise QueryError(f"{_short(raw)} is not a valid integer for column {column.name!r}")
        return value
    if column.type == "real":
        value = parse_real(raw)
        if value is None:
            raise QueryError(
                f"{_short(raw)} is not a valid finite real number for column {column.name!r}"
            )
        return value
    return raw


_DIGITS = re.compile(r"-?[0-9]+")


def _short(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def encode_cursor(position: int) -> str:
    """A cursor names the last row of a page by its position; its sort value is read back."""
    return base64.urlsafe_b64encode(orjson.dumps([position])).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row position of a cursor; `[value, position]` cursors of format 1 URLs still work."""
    bad = QueryError("_after is not a cursor this API returned", parameter="_after")
    if not 0 < len(cursor) <= _MAX_CURSOR_CHARS:
        raise bad
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise bad from None
    if not isinstance(decoded, list) or not 1 <= len(decoded) <= 2:
        raise bad
    if len(decoded) == 2 and not (decoded[0] is None or isinstance(decoded[0], (int, float, str))):
        raise bad
    position = decoded[-1]
    if type(position) is not int or not 0 < position <= INT64_MAX:
        raise bad
    if len(decoded) == 2 and type(decoded[0]) is bool:
        raise bad
    return position


@dataclass(frozen=True)
class _Layout:
    """How a file names its row order and the user's columns in SQL."""

    order: str
    columns: dict[str, str]


class VersionReader:
    """Queries one immutable version file; a connection per thread, opened read-only."""

    def __init__(self, path: Path, schema: Sequence[Column]):
        self.path = path
        self.schema = {c.name: c for c in schema}
        self.names = [c.name for c in schema]
        self._local = threading.local()

    def _conn(self) -> tuple[sqlite3.Connection, _Layout]:
        """Per thread, with the layout read from that connection's own file."""
        opened = getattr(self._local, "opened", None)
        if opened is None:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False
            )
            if _format_of(conn) == FORMAT:
                layout = _Layout(ORDER_COLUMN, {n: f"c{i}" for i, n in enumerate(self.names)})
            else:
                layout = _Layout("rowid", {n: _quote(n) for n in self.names})
            opened = self._local.opened = (conn, layout)
        return opened

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
        conn, layout = self._conn()
        order, sql = layout.order, layout.columns
        names = [self.column(f).name for f in fields] if fields else self.names
        where: list[str] = []
        params: list[Any] = []
        for name, op, raw in filters:
            if op not in FILTER_OPS:
                raise QueryError(
                    f"unknown filter operator {op!r}; use one of {', '.join(FILTER_OPS)}"
                )
            where.append(f"{sql[self.column(name).name]} {FILTER_OPS[op]} ?")
            params.append(coerce(self.schema[name], raw))
        sort_sql = sql[self.column(sort).name] if sort else None
        direction = "DESC" if descending else "ASC"
        cmp = "<" if descending else ">"
        if after is not None:
            position = decode_cursor(after)
            found = conn.execute(
                f"SELECT {sort_sql or 'NULL'} FROM rows WHERE {order} = ?", [position]
            ).fetchone()
            if found is None:
                raise QueryError("_after is not a cursor this API returned", parameter="_after")
            value = found[0]
            if sort_sql is None:
                where.append(f"{order} {cmp} ?")
                params.append(position)
            elif value is None:
                # NULLs sort first ascending and last descending in SQLite.
                tail = "" if descending else f" OR {sort_sql} IS NOT NULL"
                where.append(f"(({sort_sql} IS NULL AND {order} {cmp} ?){tail})")
                params.append(position)
            else:
                tail = f" OR {sort_sql} IS NULL" if descending else ""
                where.append(f"({sort_sql} {cmp} ? OR ({sort_sql} = ? AND {order} {cmp} ?){tail})")
                params.extend([value, value, position])
        by = f"{sort_sql} {direction}, {order} {direction}" if sort_sql else f"{order} {direction}"
        select = ", ".join(sql[n] for n in names)
        query = (
            f"SELECT {order}, {select} FROM rows"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {by} LIMIT ?"
        )
        params.append(limit + 1)
        fetched = conn.execute(query, params).fetchall()
        more = len(fetched) > limit
        fetched = fetched[:limit]
        rows = [dict(zip(names, r[1:], strict=True)) for r in fetched]
        next_cursor = encode_cursor(fetched[-1][0]) if more else None
        return Page(columns=names, rows=rows, next_cursor=next_cursor)
