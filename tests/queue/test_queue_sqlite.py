"""SQLite only: the API's write and the enqueue commit in one transaction (embedded mode)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from madbwpu_r.queue import InvalidJob, open_queue
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


def test_rollback_leaves_no_job(db) -> None:
    q, conn = db
    conn.execute("BEGIN")
    conn.execute("INSERT INTO requests VALUES ('r1')")
    job_id = q.enqueue("ingest", {"task": "ingest"}, tx=conn)
    conn.execute("ROLLBACK")
    assert q.get(job_id) is None
    assert conn.execute("SELECT count(*) FROM requests").fetchone() == (0,)
    assert q.depth("ingest").ready == 0


def test_commit_makes_write_and_job_visible_together(db) -> None:
    q, conn = db
    conn.execute("BEGIN")
    conn.execute("INSERT INTO requests VALUES ('r1')")
    job_id = q.enqueue("ingest", {"task": "ingest"}, idempotency_key="r1", tx=conn)
    assert q.get(job_id) is None  # not committed yet: invisible to the queue's connection
    conn.execute("COMMIT")
    assert q.get(job_id).state == "ready"
    assert q.claim(["ingest"])[0].id == job_id
    conn.execute("BEGIN")
    assert q.enqueue("ingest", {}, idempotency_key="r1", tx=conn) == job_id
    conn.execute("COMMIT")


def test_queue_tables_share_the_file_and_are_prefixed(db) -> None:
    _, conn = db
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"requests", "queue_jobs"}
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


def test_tx_is_refused_by_other_backends_too(db) -> None:
    q, conn = db
    with pytest.raises(InvalidJob):
        q.enqueue("ingest", {}, tx=object())
