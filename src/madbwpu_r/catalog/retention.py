"""Retention: what may be forgotten once a job has ended, swept periodically by the API.

Swept: succeeded queue jobs, uploads whose ingest ended (published, or its job dead or gone)
and delivered outbox rows, each once older than the retention age. Kept: version files
(releases refer to them) and every metadata record (datasets, versions, ingests).

Removing an upload purges data, so each one is audited (`data.purge`, target `dataset:NAME`)
in the unit of work that marks it removed. The blob itself is deleted just before that commit
(a blob store takes no part in a database transaction): a crash in between leaves the upload
unmarked and unaudited, and the next sweep deletes it again (a no-op) and records it then, so
no removal stays unrecorded and no entry names a removal that did not happen.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.blobs import BlobStore, BlobStoreError
from madbwpu_r.catalog.service import upload_key
from madbwpu_r.queue import Queue, QueueError
from madbwpu_r.store import MetadataStore, StoreError

__all__ = ["DEFAULT_RETENTION", "Retention", "Swept"]

DEFAULT_RETENTION = 7 * 24 * 3600.0
log = logging.getLogger("madbwpu_r.catalog.retention")


@dataclass(frozen=True)
class Swept:
    jobs: int
    uploads: int
    outbox: int


class Retention:
    def __init__(
        self,
        store: MetadataStore,
        queue: Queue,
        blobs: BlobStore,
        age: float = DEFAULT_RETENTION,
        *,
        interval: float = 600.0,
        actor: str = "api",
    ) -> None:
        if age < 0 or interval <= 0:
            raise ValueError("retention age must be >= 0 and the interval > 0 seconds")
        self.store = store
        self.queue = queue
        self.blobs = blobs
        self.age = age
        self.interval = interval
        self.actor = actor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> Swept:
        before = time.time() - self.age
        jobs = self.queue.sweep_succeeded(older_than=self.age)
        ended = []
        for record in self.store.kept_uploads(before=before):
            if record.version_digest is None:
                info = self.queue.get(record.job_id)
                if info is not None and info.state != "dead":
                    continue  # still to run (or running): its worker needs the upload
            self.blobs.delete(upload_key(record.upload))
            ended.append(record)
        if ended:
            with self.store.unit_of_work() as uow:
                uow.forget_uploads([r.job_id for r in ended])
                for r in ended:
                    uow.audit(
                        AuditRecord(self.actor, "data.purge", f"dataset:{r.dataset}",
                                    detail=f"retention: upload {r.upload} of job {r.job_id}"[:1024])
                    )  # fmt: skip
        outbox = self.store.sweep_outbox(before=before)
        return Swept(jobs, len(ended), outbox)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                swept = self.sweep()
            except (StoreError, QueueError, BlobStoreError) as exc:
                log.warning("retention sweep failed", extra={"error": str(exc)})
                continue
            if swept.jobs or swept.uploads or swept.outbox:
                log.info(
                    "retention sweep",
                    extra={"jobs": swept.jobs, "uploads": swept.uploads, "outbox": swept.outbox},
                )
