"""The product's verbs, through the service layer only, over real engines."""

from __future__ import annotations

import pytest

from madbwpu_r.catalog import Catalog, Conflict, NotFound, OutboxRelay, deliverers
from madbwpu_r.store import Column, VersionInfo


def version(dataset: str, digest: str) -> VersionInfo:
    return VersionInfo(dataset, digest, 1, (Column("id", "integer"),), "c")


def test_an_accepted_ingest_is_on_the_queue_when_the_call_returns(catalog: Catalog) -> None:
    accepted = catalog.accept_ingest("people", "u1.csv", None)
    info = catalog.queue.get(accepted.job_id)
    assert info is not None and info.state == "ready"
    assert info.payload == {"task": "ingest", "dataset": "people", "upload": "u1.csv"}
    assert catalog.job_status(accepted.job_id)["status"] == "queued"
    assert catalog.store.pending() == []


def test_a_repeated_idempotency_key_is_the_same_ingest_and_one_job(catalog: Catalog) -> None:
    first = catalog.accept_ingest("people", "u1.csv", "key-1")
    again = catalog.accept_ingest("people", "u2.csv", "key-1")
    other = catalog.accept_ingest("places", "u3.csv", "key-1")
    assert (again.job_id, again.duplicate, first.duplicate) == (first.job_id, True, False)
    assert other.job_id != first.job_id
    assert len(catalog.queue.list()) == 2


def test_a_job_accepted_while_the_queue_fails_is_enqueued_by_a_later_flush(engines, purger) -> None:
    store, queue = engines
    calls = {"n": 0}

    def down_once(row):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("queue down")
        return deliverers(queue)["enqueue"](row)

    relay = OutboxRelay(store, {**deliverers(queue, purger), "enqueue": down_once})
    catalog = Catalog(store, queue, relay)
    accepted = catalog.accept_ingest("people", "u1.csv", None)
    assert queue.get(accepted.job_id) is None
    assert catalog.job_status(accepted.job_id)["status"] == "queued"  # accepted, not lost
    (row,) = store.pending()
    assert row.attempts == 1 and "queue down" in row.last_error
    relay.flush()
    assert queue.get(accepted.job_id).state == "ready"
    relay.flush()  # delivered rows are not delivered again
    assert len(queue.list()) == 1


def test_publishing_is_once_per_job_and_purges_in_order(catalog: Catalog, purger) -> None:
    a = catalog.accept_ingest("people", "u1.csv", None)
    b = catalog.accept_ingest("people", "u2.csv", None)
    first = catalog.publish_version(a.job_id, version("people", "d1"))
    assert first.applied and first.purge["ok"]
    again = catalog.publish_version(a.job_id, version("people", "d1"))
    assert (again.applied, again.purge) == (False, None)
    catalog.publish_version(b.job_id, version("people", "d2"))
    assert [p["keys"] for p in purger.purges] == [["dataset:people", "datasets"]] * 2
    assert [p["sequence"][1] for p in purger.purges] == [1, 2]
    assert catalog.published_version(a.job_id).digest == "d1"
    assert catalog.store.current("people").digest == "d2"


def test_a_purge_that_fails_is_delivered_later_and_later_ones_wait(catalog, purger) -> None:
    a = catalog.accept_ingest("people", "u1.csv", None)
    b = catalog.accept_ingest("places", "u2.csv", None)
    purger.fail = True
    assert catalog.publish_version(a.job_id, version("people", "d1")).purge is None
    catalog.publish_version(b.job_id, version("places", "d2"))
    assert purger.purges == [] and len(catalog.store.pending()) == 2
    purger.fail = False
    catalog.relay.flush()
    assert [p["sequence"][1] for p in purger.purges] == [1, 2]


def test_publish_refuses_unknown_and_foreign_jobs(catalog: Catalog) -> None:
    with pytest.raises(NotFound):
        catalog.publish_version("nope", version("people", "d1"))
    a = catalog.accept_ingest("people", "u1.csv", None)
    with pytest.raises(Conflict, match="ingests 'people', not 'places'"):
        catalog.publish_version(a.job_id, version("places", "d1"))
    missing = Catalog(catalog.store, catalog.queue, catalog.relay, has_version=lambda d: False)
    with pytest.raises(Conflict, match="not in the version store"):
        missing.publish_version(a.job_id, version("people", "d1"))
    with pytest.raises(NotFound):
        catalog.record_progress("nope", 1, 0.5, "half")


def test_retry_dead_goes_through_the_outbox(catalog: Catalog) -> None:
    a = catalog.accept_ingest("people", "u1.csv", None)
    job = catalog.queue.claim("ingest")[0]
    catalog.queue.nack(job, "bad file", retry=False)
    assert catalog.job_status(a.job_id)["status"] == "failed"
    assert catalog.retry_dead(a.job_id).state == "ready"
    with pytest.raises(Conflict, match="only dead jobs"):
        catalog.retry_dead(a.job_id)
    with pytest.raises(NotFound):
        catalog.retry_dead("nope")


def test_a_process_without_a_purger_leaves_purges_for_one_that_has(engines, purger) -> None:
    store, queue = engines
    api = Catalog(store, queue, OutboxRelay(store, deliverers(queue, purger)))
    a = api.accept_ingest("people", "u1.csv", None)
    purger.fail = True
    api.publish_version(a.job_id, version("people", "d1"))
    purger.fail = False
    cli = OutboxRelay(store, deliverers(queue))  # a CLI process: queue only
    assert cli.flush() == {}
    assert [r.kind for r in store.pending()] == ["purge"]
    api.relay.flush()
    assert store.pending() == [] and len(purger.purges) == 1
