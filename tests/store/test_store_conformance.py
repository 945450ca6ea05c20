"""The store's rules, checked on every backend through the port only."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from madbwpu_r.store import (
    Column,
    IngestRecord,
    MetadataStore,
    OutboxMessage,
    Progress,
    UnknownJob,
    VersionInfo,
)

SCHEMA = (Column("id", "integer"), Column("name", "text"))


def version(dataset: str, digest: str, rows: int = 2) -> VersionInfo:
    return VersionInfo(dataset, digest, rows, SCHEMA, "c" + digest)


def accept(store: MetadataStore, job_id: str, dataset: str = "people", at: float = 1.0, key=None):
    with store.unit_of_work() as uow:
        return uow.record_ingest(IngestRecord(job_id, dataset, f"{job_id}.csv", at, None, key))


def publish(store: MetadataStore, job_id: str, v: VersionInfo) -> bool:
    with store.unit_of_work() as uow:
        return uow.record_version(job_id, v)


def test_a_version_is_published_once_per_job(store: MetadataStore) -> None:
    accept(store, "j1")
    assert publish(store, "j1", version("people", "d1")) is True
    assert publish(store, "j1", version("people", "d2")) is False
    assert store.current("people").digest == "d1"
    assert [v.digest for v in store.versions("people")] == ["d1"]
    assert store.ingest("j1").version_digest == "d1"


def test_the_newest_accepted_ingest_wins(store: MetadataStore) -> None:
    accept(store, "old", at=1.0)
    accept(store, "new", at=2.0)
    publish(store, "new", version("people", "dnew"))
    publish(store, "old", version("people", "dold"))  # slower, older: kept, not current
    assert store.current("people").digest == "dnew"
    assert {v.digest for v in store.versions("people")} == {"dnew", "dold"}


def test_the_same_content_twice_is_one_version(store: MetadataStore) -> None:
    accept(store, "j1", at=1.0)
    accept(store, "j2", at=2.0)
    publish(store, "j1", version("people", "same"))
    assert publish(store, "j2", version("people", "same")) is True
    assert [v.digest for v in store.versions("people")] == ["same"]


def test_unknown_or_foreign_jobs_are_refused_with_the_stores_own_error(
    store: MetadataStore,
) -> None:
    with pytest.raises(UnknownJob):
        publish(store, "nope", version("people", "d"))
    accept(store, "j1", dataset="people")
    with pytest.raises(UnknownJob):
        publish(store, "j1", version("other", "d"))
    assert store.current("other") is None
    assert store.ingest("nope") is None


def test_an_idempotency_key_names_one_ingest_per_dataset(store: MetadataStore) -> None:
    first = accept(store, "j1", key="k")
    again = accept(store, "j2", key="k")
    other = accept(store, "j3", dataset="other", key="k")
    assert first.job_id == again.job_id == "j1"
    assert other.job_id == "j3"
    assert store.ingest("j2") is None


def test_a_failed_unit_of_work_leaves_nothing(store: MetadataStore) -> None:
    with pytest.raises(RuntimeError), store.unit_of_work() as uow:
        uow.record_ingest(IngestRecord("j1", "people", "u", 1.0))
        uow.emit(OutboxMessage("enqueue", {"job_id": "j1"}))
        raise RuntimeError("the operation failed after its writes")
    assert store.ingest("j1") is None
    assert store.pending() == []


def test_outbox_rows_commit_with_the_write_and_are_handed_out_until_delivered(
    store: MetadataStore,
) -> None:
    with store.unit_of_work() as uow:
        uow.record_ingest(IngestRecord("j1", "people", "u", 1.0))
        a = uow.emit(OutboxMessage("enqueue", {"job_id": "j1"}))
        b = uow.emit(OutboxMessage("purge", {"keys": ["dataset:people"]}))
    assert a < b
    rows = store.pending()
    assert [(r.seq, r.kind) for r in rows] == [(a, "enqueue"), (b, "purge")]
    assert rows[0].payload == {"job_id": "j1"}
    store.failed(a, "queue down")
    assert store.pending()[0].attempts == 1 and store.pending()[0].last_error == "queue down"
    store.delivered(a)
    assert [r.seq for r in store.pending()] == [b]
    store.delivered(b)
    assert store.pending() == []
    assert store.sweep_outbox(before=0.0) == 0
    assert store.sweep_outbox(before=float("inf")) == 2


def test_purges_are_numbered_without_gaps_in_one_durable_epoch(
    make_store: Callable[[], MetadataStore],
) -> None:
    store = make_store()
    with store.unit_of_work() as uow:
        uow.emit(OutboxMessage("purge", {"keys": ["a"]}))
        uow.emit(OutboxMessage("enqueue", {"job_id": "x"}))
        uow.emit(OutboxMessage("purge", {"keys": ["b"]}))
    reopened = make_store()  # another process, or the same one restarted
    with reopened.unit_of_work() as uow:
        uow.emit(OutboxMessage("purge", {"keys": ["c"]}))
    purges = [r.payload for r in reopened.pending() if r.kind == "purge"]
    assert [p["seq"] for p in purges] == [1, 2, 3]
    assert len({p["epoch"] for p in purges}) == 1
    assert [p["keys"] for p in purges] == [["a"], ["b"], ["c"]]


def test_concurrent_units_of_work_serialise(make_store: Callable[[], MetadataStore]) -> None:
    store = make_store()
    errors: list[BaseException] = []

    def emit_many(handle: MetadataStore) -> None:
        try:
            for _ in range(20):
                with handle.unit_of_work() as uow:
                    uow.emit(OutboxMessage("purge", {"keys": ["k"]}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=emit_many, args=(make_store(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = [r.payload["seq"] for r in store.pending(limit=1000)]
    assert seqs == list(range(1, 61))  # delivery order is purge order


def test_progress_keeps_the_newest_attempt(store: MetadataStore) -> None:
    with store.unit_of_work() as uow:
        uow.set_progress("j1", Progress(2, 0.5, "half", 10.0))
    with store.unit_of_work() as uow:
        uow.set_progress("j1", Progress(1, 0.9, "stale attempt", 11.0))
    assert store.progress("j1") == Progress(2, 0.5, "half", 10.0)
    assert store.progress("nope") is None


def test_datasets_list_current_versions(store: MetadataStore) -> None:
    assert list(store.datasets()) == []
    accept(store, "j1", dataset="b")
    accept(store, "j2", dataset="a", at=1.0)
    accept(store, "j3", dataset="a", at=2.0)
    publish(store, "j1", version("b", "db"))
    publish(store, "j2", version("a", "da1"))
    publish(store, "j3", version("a", "da2"))
    listed = [(d.name, d.current.digest, d.versions) for d in store.datasets()]
    assert listed == [("a", "da2", 2), ("b", "db", 1)]
    assert store.version("a", "da1").schema == SCHEMA
    assert store.version("a", "zzz") is None


def test_uploads_are_kept_until_forgotten(store: MetadataStore) -> None:
    accept(store, "j1", at=1.0)
    accept(store, "j2", at=5.0)
    assert [r.job_id for r in store.kept_uploads(before=3.0)] == ["j1"]
    store.forget_uploads(["j1"])
    assert [r.job_id for r in store.kept_uploads(before=10.0)] == ["j2"]


def test_ping_answers(store: MetadataStore) -> None:
    store.ping()


def test_a_version_keeps_the_first_file_published_for_it(store: MetadataStore) -> None:
    from dataclasses import replace

    accept(store, "j1", at=1.0)
    accept(store, "j2", at=2.0)
    publish(store, "j1", replace(version("people", "same"), sha256="a" * 64))
    publish(store, "j2", replace(version("people", "same"), sha256="b" * 64))
    assert store.version("people", "same").sha256 == "a" * 64
    assert store.current("people").sha256 == "a" * 64
