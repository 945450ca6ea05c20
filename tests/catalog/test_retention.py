"""Retention over real engines: what an ended job leaves is swept, version files are kept."""

from __future__ import annotations

import time
from pathlib import Path

from madbwpu_r.audit.log import AuditLog
from madbwpu_r.blobs import open_blobs
from madbwpu_r.catalog import Catalog, upload_key
from madbwpu_r.catalog.retention import Retention
from madbwpu_r.store import Column, VersionInfo


def test_a_sweep_forgets_ended_work_and_keeps_versions(catalog: Catalog, tmp_path: Path) -> None:
    blobs = open_blobs((tmp_path / "blobs").as_uri())
    for name in ("a.csv", "b.csv", "c.csv"):
        blobs.put(upload_key(name), b"id\n1\n")
    version_file = blobs.put_content(b"an immutable version file")
    published = catalog.accept_ingest("people", "a.csv", None)
    dead = catalog.accept_ingest("places", "b.csv", None)
    waiting = catalog.accept_ingest("things", "c.csv", None)
    for job in catalog.queue.claim("ingest", n=2):
        if job.id == published.job_id:
            version = VersionInfo("people", "d1", 1, (Column("id", "integer"),), "c")
            catalog.publish_version(job.id, version)
            catalog.queue.ack(job)
        else:
            catalog.queue.nack(job, "bad file", retry=False)
    retention = Retention(catalog.store, catalog.queue, blobs, age=3600)
    assert retention.sweep().jobs == 0  # nothing is old enough yet
    time.sleep(0.05)

    swept = Retention(catalog.store, catalog.queue, blobs, age=0.01).sweep()
    assert (swept.jobs, swept.uploads) == (1, 2)
    assert swept.outbox >= 3  # the enqueues and the purge, all delivered
    assert [b.key for b in blobs.list("uploads/")] == [upload_key("c.csv")]
    assert blobs.exists(version_file.key)  # version files are kept
    assert catalog.queue.get(published.job_id) is None
    assert catalog.queue.get(dead.job_id).state == "dead"  # an operator may still look at it
    assert catalog.queue.get(waiting.job_id).state == "ready"
    assert catalog.store.current("people").digest == "d1"  # metadata is kept
    assert Retention(catalog.store, catalog.queue, blobs, age=0.01).sweep().uploads == 0
    # Each removed upload is a purge of data, audited in the environment's own log.
    log = AuditLog.open(f"sqlite:///{tmp_path}/state.sqlite", "madbwpu-r/test")
    purges = log.query(action="data.purge")
    log.close()
    assert sorted((e.actor, e.target) for e in purges) == [
        ("api", "dataset:people"),
        ("api", "dataset:places"),
    ]
    assert {e.detail for e in purges} == {
        f"retention: upload a.csv of job {published.job_id}",
        f"retention: upload b.csv of job {dead.job_id}",
    }
