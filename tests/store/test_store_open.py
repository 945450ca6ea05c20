"""Choosing a backend by URL, and what a caller sees when the engine is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from madbwpu_r._drivers import Backend
from madbwpu_r.store import StoreConfigError, StoreUnavailable, open_store
from madbwpu_r.store.sqlite import SQLiteMetadataStore


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(StoreConfigError, match="known: postgres, postgresql, sqlite"):
        open_store("mysql://localhost/db")


def test_a_missing_driver_gives_its_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import madbwpu_r.store as store_registry

    missing = Backend("madbwpu_r.store.postgres", "X", ("psycopg", "no_such_pool"), "uv add p")
    monkeypatch.setitem(store_registry._BACKENDS, "postgresql", missing)
    with pytest.raises(StoreConfigError, match="the postgresql store needs the 'no_such_pool'"):
        open_store("postgresql://postgres@127.0.0.1/test")


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="unknown sqlite store options: colour"):
        open_store(f"sqlite:///{tmp_path}/s.sqlite?colour=red")
    with pytest.raises(StoreConfigError, match="schema"):
        open_store("postgresql://postgres@127.0.0.1/test?schema=Bad-Name")


def test_a_postgres_server_that_is_down_is_unavailable_not_a_driver_error() -> None:
    with pytest.raises(StoreUnavailable, match="unreachable"):
        open_store("postgresql://postgres@127.0.0.1:9/test?pool_timeout=0.5")


def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{blocker}/state.sqlite")


def test_sqlite_relative_and_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a/state.sqlite")
    assert isinstance(store, SQLiteMetadataStore) and store.path == tmp_path / "a/state.sqlite"
    store.close()
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///rel.sqlite")
    assert store.path == tmp_path / "rel.sqlite"
    store.close()


def test_a_store_written_before_the_outbox_is_upgraded_on_open(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE ingests (job_id TEXT PRIMARY KEY, dataset TEXT NOT NULL,"
        " upload TEXT NOT NULL, accepted_at REAL NOT NULL, version_digest TEXT);"
        "INSERT INTO ingests VALUES ('j1', 'people', 'u.csv', 1.0, NULL);"
    )
    conn.close()
    store = open_store(f"sqlite:///{path}")
    record = store.ingest("j1")
    assert record is not None and record.idempotency_key is None
    assert [r.job_id for r in store.kept_uploads(before=2.0)] == ["j1"]
    store.close()
