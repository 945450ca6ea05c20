"""SQLite only: the queue's table beside others in one file, and its URL forms."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from madbwpu_r.queue import open_queue
from madbwpu_r.queue.sqlite import SQLiteQueue


@pytest.fixture
def db(tmp_path: Path):
    path = tmp_path / "state.sqlite"
    q = open_queue(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE requests (id TEXT PRIMARY KEY)")
    yield q, conn
    conn.close()
    q.close()


def test_queue_tables_share_the_file_and_are_prefixed(db) -> None:
    _, conn = db
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"requests", "queue_jobs", "queue_workers"}
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_queue(f"sqlite:///{tmp_path}/a/b.sqlite?lease=3&max_attempts=7&backoff=0.5")
    assert isinstance(q, SQLiteQueue) and q.path == tmp_path / "a" / "b.sqlite"
    assert (q.default_lease, q.policy.max_attempts, q.policy.backoff_base) == (3.0, 7, 0.5)
    q.close()
    monkeypatch.chdir(tmp_path)
    q = open_queue("sqlite:///rel.sqlite")
    assert q.path == tmp_path / "rel.sqlite"
    q.close()
