"""The audit tables and statements, written once for SQLite and PostgreSQL.

Every function takes an open connection that is already inside the caller's transaction, and a
`Dialect`, so that the store's unit of work can append an entry in the very transaction that
makes the change it records. The total order comes from the one-row `audit_head`: an append
first UPDATEs it, which takes SQLite's write lock or PostgreSQL's row lock until commit, so
appenders in any number of processes queue there and each sees the previous entry's hash.
The head also keeps the Merkle frontier, so a checkpoint never rereads the log.
"""

from __future__ import annotations

import hashlib
import time as _time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from madbwpu_r.audit.merkle import Frontier
from madbwpu_r.audit.records import GENESIS, AuditRecord, Entry, format_time

__all__ = [
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "Head",
    "append",
    "checkpoints",
    "create_tables",
    "entries",
    "head",
    "head_size",
    "last_checkpoint",
    "lock_head",
    "query",
    "store_checkpoint",
    "rows",
]


@dataclass(frozen=True)
class Dialect:
    """How one engine spells things; `prefix` qualifies table names (a PostgreSQL schema)."""

    name: str
    mark: str  # the driver's placeholder
    real: str
    int64: str
    prefix: str = ""

    def sql(self, text: str) -> str:
        return text.replace("{p}", self.prefix).replace("?", self.mark)


SQLITE = Dialect("sqlite", "?", "REAL", "INTEGER")
POSTGRES = Dialect("postgres", "%s", "DOUBLE PRECISION", "BIGINT")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}audit_entries (
    seq {int64} PRIMARY KEY,
    ts {real} NOT NULL,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    evidence TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_ts ON {p}audit_entries (ts);
CREATE TABLE IF NOT EXISTS {p}audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    size {int64} NOT NULL,
    hash TEXT NOT NULL,
    frontier TEXT NOT NULL,
    touched {real} NOT NULL
);
INSERT INTO {p}audit_head (id, size, hash, frontier, touched) VALUES (0, 0, '{genesis}', '', 0)
    ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS {p}audit_checkpoints (
    number {int64} PRIMARY KEY,
    size {int64} NOT NULL,
    ts {real} NOT NULL,
    text TEXT NOT NULL
)
"""

_COLUMNS = "seq, time, actor, action, target, outcome, detail, evidence, prev"


@dataclass(frozen=True)
class Head:
    size: int
    hash: str  # the last entry's hash (GENESIS when empty)
    frontier: Frontier


def _exists(conn: Any, d: Dialect) -> bool:
    if d.name == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_checkpoints'"
        return conn.execute(sql).fetchone() is not None
    row = conn.execute("SELECT to_regclass(%s)", (d.prefix + "audit_checkpoints",)).fetchone()
    return row[0] is not None


def create_tables(conn: Any, d: Dialect) -> None:
    """Create the tables once; skipped when they exist, since PostgreSQL's CREATE INDEX IF NOT
    EXISTS still takes a lock that would deadlock with a running append."""
    if _exists(conn, d):
        return
    ddl = _SCHEMA.replace("{int64}", d.int64).replace("{real}", d.real)
    for statement in ddl.replace("{genesis}", GENESIS).split(";"):
        if statement.strip():
            conn.execute(statement.replace("{p}", d.prefix))


def lock_head(conn: Any, d: Dialect) -> Head:
    # The UPDATE comes first: it takes the write lock (SQLite) or the row lock (PostgreSQL)
    # before anything is read, so no two appenders ever read the same head.
    conn.execute(d.sql("UPDATE {p}audit_head SET touched = ? WHERE id = 0"), (_time.time(),))
    return head(conn, d)


def head(conn: Any, d: Dialect) -> Head:
    size, last, frontier = conn.execute(
        d.sql("SELECT size, hash, frontier FROM {p}audit_head WHERE id = 0")
    ).fetchone()
    return Head(size, last, Frontier.decode(size, frontier))


def head_size(conn: Any, d: Dialect) -> int:
    """The head's size alone (a verifier reads it even when the frontier beside it is damaged)."""
    return int(conn.execute(d.sql("SELECT size FROM {p}audit_head WHERE id = 0")).fetchone()[0])


def append(
    conn: Any, d: Dialect, records: Sequence[AuditRecord], now: float | None = None
) -> list[Entry]:
    """Chain `records` onto the log inside the caller's transaction; they commit with it."""
    for record in records:
        record.check()
    if not records:
        return []
    now = _time.time() if now is None else now
    h = lock_head(conn, d)
    stamp = format_time(now)
    made: list[Entry] = []
    rows = []
    prev = h.hash
    sha, dumps, sort, frontier = hashlib.sha256, orjson.dumps, orjson.OPT_SORT_KEYS, h.frontier
    for seq, r in enumerate(records, start=h.size):
        evidence = dict(r.evidence)
        # Entry.to_json()'s fields, encoded once: the leaf, the chain hash and the stored row.
        leaf = dumps(
            {"action": r.action, "actor": r.actor, "detail": r.detail, "evidence": evidence,
             "outcome": r.outcome, "prev": prev, "seq": seq, "target": r.target, "time": stamp},
            option=sort,
        )  # fmt: skip
        entry_hash = sha(leaf).hexdigest()
        frontier.append(sha(b"\x00" + leaf).digest())
        rows.append((seq, now, stamp, r.actor, r.action, r.target, r.outcome, r.detail,
                     dumps(evidence, option=sort).decode(), prev, entry_hash))  # fmt: skip
        made.append(
            Entry(seq, stamp, r.actor, r.action, r.target, r.outcome, r.detail, evidence, prev)
        )
        prev = entry_hash
    conn.cursor().executemany(
        d.sql(
            f"INSERT INTO {{p}}audit_entries ({_COLUMNS.replace('seq, time', 'seq, ts, time')}, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ),
        rows,
    )
    conn.execute(
        d.sql("UPDATE {p}audit_head SET size = ?, hash = ?, frontier = ? WHERE id = 0"),
        (h.size + len(records), prev, h.frontier.encode()),
    )
    return made


def _entry(row: Sequence[Any]) -> Entry:
    seq, stamp, actor, action, target, outcome, detail, evidence, prev = row
    return Entry(seq, stamp, actor, action, target, outcome, detail, orjson.loads(evidence), prev)


def entries(conn: Any, d: Dialect, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
    """Entries start..stop-1 in order, fetched in pages (a million entries fit in no list)."""
    position = start
    while stop is None or position < stop:
        limit = 10_000 if stop is None else min(10_000, stop - position)
        rows = conn.execute(
            d.sql(f"SELECT {_COLUMNS} FROM {{p}}audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?"),
            (position, limit),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _entry(row)
        position = rows[-1][0] + 1


def rows(conn: Any, d: Dialect, page: int = 20_000) -> Iterator[tuple[Any, ...]]:
    """Every entry as stored, with its stored hash last, in pages: for verifying a whole log."""
    position = 0
    sql = d.sql(
        f"SELECT {_COLUMNS}, hash FROM {{p}}audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?"
    )
    while True:
        found = conn.execute(sql, (position, page)).fetchall()
        if not found:
            return
        yield from found
        position = found[-1][0] + 1


def query(
    conn: Any,
    d: Dialect,
    *,
    since: float | None = None,
    until: float | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[Entry]:
    where, args = [], []
    for column, op, value in (
        ("ts", ">=", since),
        ("ts", "<", until),
        ("actor", "=", actor),
        ("target", "=", target),
        ("seq", ">", after),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    if action is not None:  # `deploy.` matches every deploy action
        where.append("(action = ? OR action LIKE ?)" if action.endswith(".") else "action = ?")
        args.extend([action, action + "%"] if action.endswith(".") else [action])
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = d.sql(f"SELECT {_COLUMNS} FROM {{p}}audit_entries{clause} ORDER BY seq LIMIT ?")
    return [_entry(row) for row in conn.execute(sql, (*args, limit)).fetchall()]


def store_checkpoint(conn: Any, d: Dialect, size: int, ts: float, text: str) -> int:
    number = conn.execute(
        d.sql("SELECT COALESCE(MAX(number), -1) + 1 FROM {p}audit_checkpoints")
    ).fetchone()
    conn.execute(
        d.sql("INSERT INTO {p}audit_checkpoints (number, size, ts, text) VALUES (?, ?, ?, ?)"),
        (number[0], size, ts, text),
    )
    return number[0]


def last_checkpoint(conn: Any, d: Dialect) -> str | None:
    row = conn.execute(
        d.sql("SELECT text FROM {p}audit_checkpoints ORDER BY number DESC LIMIT 1")
    ).fetchone()
    return None if row is None else row[0]


def checkpoints(conn: Any, d: Dialect, max_size: int | None = None) -> list[str]:
    if max_size is None:
        rows = conn.execute(
            d.sql("SELECT text FROM {p}audit_checkpoints ORDER BY number")
        ).fetchall()
    else:
        rows = conn.execute(
            d.sql("SELECT text FROM {p}audit_checkpoints WHERE size <= ? ORDER BY number"),
            (max_size,),
        ).fetchall()
    return [r[0] for r in rows]
