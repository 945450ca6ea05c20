"""One audit log: append records, sign checkpoints, read entries and proofs.

`AuditLog` is what commands and services use. Inside a store's unit of work, call
`audit._sql.append(tx, dialect, records)` instead, so the entry commits with the change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from madbwpu_r.audit import _sql
from madbwpu_r.audit.checkpoint import Checkpoint
from madbwpu_r.audit.db import AuditDB, open_db
from madbwpu_r.audit.merkle import Tree, leaf_hash
from madbwpu_r.audit.records import AuditRecord, Entry
from madbwpu_r.signing import SigningKey

__all__ = ["AuditLog", "origin_for"]


def origin_for(log: str) -> str:
    return f"madbwpu-r/{log}"


class AuditLog:
    def __init__(self, db: AuditDB, origin: str):
        self.db = db
        self.origin = origin

    @classmethod
    def open(cls, url: str, origin: str) -> AuditLog:
        return cls(open_db(url), origin)

    def close(self) -> None:
        self.db.close()

    def append(self, records: Sequence[AuditRecord] | AuditRecord) -> list[Entry]:
        """Append in one transaction of its own: one durable commit for the whole batch."""
        batch = [records] if isinstance(records, AuditRecord) else list(records)
        with self.db.transaction() as tx:
            return _sql.append(tx, self.db.dialect, batch)

    def append_in(self, tx: Any, records: Sequence[AuditRecord]) -> list[Entry]:
        """Append inside the caller's transaction on this log's database."""
        return _sql.append(tx, self.db.dialect, list(records))

    def checkpoint(self, key: SigningKey, now: float | None = None) -> Checkpoint:
        """Sign the current size and root, chained to the previous checkpoint."""
        now = time.time() if now is None else now
        with self.db.transaction() as tx:
            head = _sql.lock_head(tx, self.db.dialect)
            last = _sql.last_checkpoint(tx, self.db.dialect)
            prev = Checkpoint.parse(last).body_hash() if last else None
            cp = Checkpoint(self.origin, head.size, head.frontier.root(), now, prev).signed(key)
            _sql.store_checkpoint(tx, self.db.dialect, cp.size, now, cp.text())
        return Checkpoint.parse(cp.text())  # the time as the text has it (microseconds)

    def size(self) -> int:
        with self.db.read() as conn:
            return _sql.head(conn, self.db.dialect).size

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        with self.db.read() as conn:
            yield from _sql.entries(conn, self.db.dialect, start, stop)

    def query(self, **filters: Any) -> list[Entry]:
        with self.db.read() as conn:
            return _sql.query(conn, self.db.dialect, **filters)

    def checkpoints(self, max_size: int | None = None) -> list[Checkpoint]:
        with self.db.read() as conn:
            return [Checkpoint.parse(t) for t in _sql.checkpoints(conn, self.db.dialect, max_size)]

    def latest_checkpoint(self) -> Checkpoint | None:
        with self.db.read() as conn:
            text = _sql.last_checkpoint(conn, self.db.dialect)
        return None if text is None else Checkpoint.parse(text)

    def tree(self, stop: int | None = None) -> Tree:
        return Tree(leaf_hash(e.leaf()) for e in self.entries(0, stop))
