"""The ledger's tables and statements, shared by the SQL backends (see `store.ledger`)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from madbwpu_r.audit import _sql as audit_sql
from madbwpu_r.signing import canonical_json
from madbwpu_r.store.ledger import (
    GENESIS,
    CutoverChain,
    CutoverRow,
    LedgerEvent,
    PointerState,
    event_hash,
)

__all__ = ["LEDGER_SCHEMA", "LedgerSQL"]

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}documents (
    seq {serial},
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    idx TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    updated_at {real} NOT NULL,
    UNIQUE (kind, key)
);
CREATE TABLE IF NOT EXISTS {p}events (
    seq BIGINT PRIMARY KEY,
    at {real} NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    evidence TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}release_pointer (
    env TEXT PRIMARY KEY,
    release_id TEXT NOT NULL,
    cutover_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}consumed_grants (
    grant_id TEXT PRIMARY KEY,
    release_id TEXT NOT NULL,
    consumed_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}cutovers (
    seq BIGINT PRIMARY KEY,
    at {real} NOT NULL,
    release_id TEXT NOT NULL,
    grant_doc TEXT NOT NULL,
    manifest TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)
"""

_EVENT_COLUMNS = "seq, at, actor, action, target, outcome, evidence, hash"
_CUTOVER_COLUMNS = "seq, at, release_id, grant_doc, manifest, prev_hash, hash"


def _event(row: tuple[Any, ...]) -> LedgerEvent:
    seq, at, actor, action, target, outcome, evidence, h = row
    return LedgerEvent(
        int(seq), float(at), actor, action, target, outcome, orjson.loads(evidence), h
    )


def _cutover(row: tuple[Any, ...]) -> CutoverRow:
    seq, at, release_id, grant, manifest, prev, h = row
    return CutoverRow(int(seq), float(at), release_id, _bytes(grant), _bytes(manifest), prev, h)


def _bytes(value: str | bytes | memoryview) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


class LedgerSQL:
    """Statements over one connection; `sql` turns `?`/`{p}` into the backend's spelling."""

    def __init__(self, conn: Any, sql: Any, audit_dialect: audit_sql.Dialect) -> None:
        self.conn = conn
        self.sql = sql
        self.audit_dialect = audit_dialect

    def _execute(self, text: str, args: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self.sql(text), args)

    def _lock_chain(self) -> None:
        """Hold the ledger's row lock until commit, so two writers never chain onto the same
        last entry (SQLite's BEGIN IMMEDIATE already serialises; PostgreSQL needs the lock)."""
        self._execute("UPDATE {p}counters SET value = value + 1 WHERE name = 'ledger'")

    # ---- writes (inside the caller's transaction) -------------------------------------------

    def put_document(self, kind: str, key: str, doc: bytes, index: str, replace: bool) -> bool:
        conflict = (
            "DO UPDATE SET doc = excluded.doc, idx = excluded.idx, updated_at = excluded.updated_at"
            if replace
            else "DO NOTHING"
        )
        rows = self._execute(
            "INSERT INTO {p}documents (kind, key, idx, doc, updated_at) VALUES (?, ?, ?, ?, ?)"
            f" ON CONFLICT (kind, key) {conflict} RETURNING seq",
            (kind, key, index, doc.decode(), time.time()),
        ).fetchall()
        return bool(rows)

    def record_event(
        self, actor: str, action: str, target: str, outcome: str, evidence: dict[str, Any]
    ) -> LedgerEvent:
        self._lock_chain()
        row = self._execute("SELECT seq, hash FROM {p}events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(row[0]) + 1, row[1]) if row else (1, GENESIS)
        event = LedgerEvent(seq, time.time(), actor, action, target, outcome, evidence, "")
        h = event_hash(prev, event.body())
        self._execute(
            f"INSERT INTO {{p}}events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, event.at, actor, action, target, outcome, canonical_json(evidence).decode(), h),
        )
        return LedgerEvent(seq, event.at, actor, action, target, outcome, evidence, h)

    def switch_pointer(
        self,
        env: str,
        grant_id: str,
        release_id: str,
        grant: bytes,
        manifest: bytes,
        chain: CutoverChain,
    ) -> CutoverRow | None:
        now = time.time()
        consumed = self._execute(
            "INSERT INTO {p}consumed_grants (grant_id, release_id, consumed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (grant_id) DO NOTHING RETURNING grant_id",
            (grant_id, release_id, now),
        ).fetchall()
        if not consumed:
            return None
        self._lock_chain()
        row = self._execute(
            "SELECT seq, hash FROM {p}cutovers ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (int(row[0]) + 1, row[1]) if row else (1, GENESIS)
        h = chain(prev, seq, now)
        self._execute(
            f"INSERT INTO {{p}}cutovers ({_CUTOVER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, now, release_id, grant.decode(), manifest.decode(), prev, h),
        )
        self._execute(
            "INSERT INTO {p}release_pointer (env, release_id, cutover_seq) VALUES (?, ?, ?)"
            " ON CONFLICT (env) DO UPDATE SET release_id = excluded.release_id,"
            " cutover_seq = excluded.cutover_seq",
            (env, release_id, seq),
        )
        return CutoverRow(seq, now, release_id, grant, manifest, prev, h)

    # ---- reads ------------------------------------------------------------------------------

    def document(self, kind: str, key: str) -> bytes | None:
        row = self._execute(
            "SELECT doc FROM {p}documents WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return _bytes(row[0]) if row else None

    def documents(self, kind: str, index: str | None) -> list[bytes]:
        if index is None:
            rows = self._execute(
                "SELECT doc FROM {p}documents WHERE kind = ? ORDER BY seq", (kind,)
            ).fetchall()
        else:
            rows = self._execute(
                "SELECT doc FROM {p}documents WHERE kind = ? AND idx = ? ORDER BY seq",
                (kind, index),
            ).fetchall()
        return [_bytes(r[0]) for r in rows]

    def events(self, target: str | None, action_prefix: str | None) -> list[LedgerEvent]:
        where: list[str] = []
        args: list[Any] = []
        if target is not None:
            where.append("target = ?")
            args.append(target)
        if action_prefix is not None:
            where.append("substr(action, 1, ?) = ?")
            args += [len(action_prefix), action_prefix]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._execute(
            f"SELECT {_EVENT_COLUMNS} FROM {{p}}events{clause} ORDER BY seq", tuple(args)
        ).fetchall()
        return [_event(r) for r in rows]

    def pointer_head(self, env: str) -> tuple[str | None, int | None, int | None, str | None]:
        row = self._execute(
            "SELECT (SELECT release_id FROM {p}release_pointer WHERE env = ?),"
            " (SELECT cutover_seq FROM {p}release_pointer WHERE env = ?),"
            " (SELECT max(seq) FROM {p}cutovers),"
            " (SELECT hash FROM {p}cutovers ORDER BY seq DESC LIMIT 1)",
            (env, env),
        ).fetchone()
        release_id, seq, latest, latest_hash = row
        return (
            release_id,
            None if seq is None else int(seq),
            None if latest is None else int(latest),
            latest_hash,
        )

    def pointer(self, env: str) -> PointerState:
        release_id, seq, latest, latest_hash = self.pointer_head(env)
        cutovers = [
            _cutover(r)
            for r in self._execute(
                f"SELECT {_CUTOVER_COLUMNS} FROM {{p}}cutovers ORDER BY seq"
            ).fetchall()
        ]
        consumed = {
            g: r
            for g, r in self._execute(
                "SELECT grant_id, release_id FROM {p}consumed_grants"
            ).fetchall()
        }
        audited: set[str] = set()
        if release_id is not None:
            entries = audit_sql.query(
                self.conn, self.audit_dialect, action="release.cutover",
                target=f"release:{release_id}", limit=1 << 20,
            )  # fmt: skip
            audited = {e.evidence["grant"] for e in entries if "grant" in e.evidence}
        return PointerState(release_id, seq, latest, latest_hash, cutovers, consumed, audited)
