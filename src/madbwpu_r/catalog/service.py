"""The product's verbs over the ports: what HTTP handlers and CLI commands call.

Each write is one unit of work on the store, holding the domain change and the messages it
causes (the job to enqueue, the purge to send); the relay delivers them after the commit. A
caller never learns whether the queue shares the store's database: it only sees the verb.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.catalog.errors import Conflict, NotFound
from madbwpu_r.catalog.relay import OutboxRelay
from madbwpu_r.failpoints import failpoint
from madbwpu_r.queue import JobInfo, Queue
from madbwpu_r.signing import digest
from madbwpu_r.store import IngestRecord, MetadataStore, OutboxMessage, Progress, VersionInfo

__all__ = ["INGEST_QUEUE", "JOB_STATUS", "Accepted", "Catalog", "Published", "upload_key"]

INGEST_QUEUE = "ingest"
# The queue's states, as a client of the API sees them.
JOB_STATUS = {
    "scheduled": "queued",
    "ready": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "dead": "failed",
}


@dataclass(frozen=True)
class Accepted:
    job_id: str
    dataset: str
    duplicate: bool


@dataclass(frozen=True)
class Published:
    applied: bool
    purge: dict[str, Any] | None


def upload_key(name: str) -> str:
    """Where an accepted upload waits for its job, in the environment's blob store."""
    return f"uploads/{name}"


def dataset_keys(dataset: str) -> list[str]:
    """The surrogate keys a new version of `dataset` makes stale."""
    return [f"dataset:{dataset}", "datasets"]


class Catalog:
    """One environment's datasets and their ingest jobs."""

    def __init__(
        self,
        store: MetadataStore,
        queue: Queue,
        relay: OutboxRelay,
        *,
        has_version: Callable[[VersionInfo], bool] = lambda version: True,
    ) -> None:
        self.store = store
        self.queue = queue
        self.relay = relay
        self.has_version = has_version

    # ---- ingests ----------------------------------------------------------------------------

    def accept_ingest(
        self, dataset: str, upload: str, idempotency_key: str | None, actor: str = "api"
    ) -> Accepted:
        """Record the ingest, its job and its audit entry in one commit; a repeated key names
        the first one."""
        record = IngestRecord(
            job_id=uuid.uuid4().hex,
            dataset=dataset,
            upload=upload,
            accepted_at=time.time(),
            idempotency_key=idempotency_key,
        )
        with self.store.unit_of_work() as uow:
            kept = uow.record_ingest(record)
            if kept.job_id == record.job_id:
                uow.emit(
                    OutboxMessage(
                        "enqueue",
                        {
                            "queue": INGEST_QUEUE,
                            "job_id": record.job_id,
                            "payload": {"task": "ingest", "dataset": dataset, "upload": upload},
                        },
                    )
                )
                uow.audit(
                    AuditRecord(actor, "ingest.accepted", f"dataset:{dataset}",
                                detail=f"job {record.job_id}")
                )  # fmt: skip
        failpoint("ingest-committed")
        self.deliver_outbox()
        return Accepted(kept.job_id, dataset, duplicate=kept.job_id != record.job_id)

    def record_progress(self, job_id: str, attempt: int, fraction: float, message: str) -> None:
        self._ingest(job_id)
        with self.store.unit_of_work() as uow:
            uow.set_progress(job_id, Progress(attempt, fraction, message, time.time()))

    def published_version(self, job_id: str) -> VersionInfo | None:
        """The version this job published, if it did (a re-run after a crash asks)."""
        record = self._ingest(job_id)
        if record.version_digest is None:
            return None
        return self.store.version(record.dataset, record.version_digest)

    def publish_version(
        self, job_id: str, version: VersionInfo, actor: str = "worker"
    ) -> Published:
        """Make `version` current (unless a newer ingest won) and purge the edges, once per job."""
        record = self._ingest(job_id)
        if version.dataset != record.dataset:
            raise Conflict(f"job {job_id} ingests {record.dataset!r}, not {version.dataset!r}")
        if not self.has_version(version):
            raise Conflict(
                f"the file of version {version.digest} (sha256 {version.sha256}) "
                "is not in the blob store"
            )
        seq = None
        with self.store.unit_of_work() as uow:
            applied = uow.record_version(job_id, version)
            if applied:
                seq = uow.emit(OutboxMessage("purge", {"keys": dataset_keys(version.dataset)}))
                uow.audit(
                    AuditRecord(
                        actor,
                        "version.published",
                        f"dataset:{version.dataset}",
                        evidence=_digests(version=version.digest, checksum=version.checksum),
                        detail=f"job {job_id}, {version.row_count} rows",
                    )
                )
        results = self.deliver_outbox()
        return Published(applied, results.get(seq) if seq is not None else None)

    def invalidate(self, keys: list[str]) -> dict[str, Any] | None:
        """Purge the edges for `keys` through the outbox: now if it can be, else by the relay."""
        with self.store.unit_of_work() as uow:
            seq = uow.emit(OutboxMessage("purge", {"keys": keys}))
        return self.deliver_outbox().get(seq)

    # ---- jobs -------------------------------------------------------------------------------

    def job_status(self, job_id: str) -> dict[str, Any]:
        """The job as a client sees it: queue state, its dataset and version, progress."""
        info = self.queue.get(job_id)
        record = self.store.ingest(job_id)
        if info is None and record is None:
            raise NotFound(f"no job with id {job_id!r}")
        view = _job_view(job_id, info)
        if record is not None:
            view["dataset"] = record.dataset
            view["version"] = record.version_digest
        progress = self.store.progress(job_id)
        if progress is not None:
            fraction = 1.0 if view["status"] == "succeeded" else progress.fraction
            view["progress"] = {"fraction": fraction, "message": progress.message}
        return view

    def retry_dead(self, job_id: str, actor: str = "operator") -> JobInfo:
        """Put a dead job back on its queue with a fresh set of attempts."""
        info = self.queue.get(job_id)
        if info is None:
            raise NotFound(f"no job {job_id!r} in this environment's queue")
        if info.state != "dead":
            raise Conflict(f"job {job_id} is {info.state}; only dead jobs can be retried")
        with self.store.unit_of_work() as uow:
            uow.emit(OutboxMessage("retry", {"job_id": job_id}))
            uow.audit(AuditRecord(actor, "job.retry", f"job:{job_id}", detail=info.queue))
        self.deliver_outbox()
        after = self.queue.get(job_id)
        if after is None or after.state == "dead":
            raise Conflict(f"job {job_id} could not be retried yet; the relay will try again")
        return after

    # ---- plumbing ---------------------------------------------------------------------------

    def _ingest(self, job_id: str) -> IngestRecord:
        record = self.store.ingest(job_id)
        if record is None:
            raise NotFound(f"no ingest job with id {job_id!r}")
        return record

    def deliver_outbox(self) -> dict[int, Any]:
        """Deliver now, so the caller sees the effect; what fails stays for the relay."""
        try:
            return self.relay.flush()
        finally:
            self.relay.notify()


def _digests(**values: str) -> dict[str, str]:
    """Evidence is SHA-256 hex digests only; a value in another form is digested first."""
    return {k: v if _HEX.match(v) else digest(v.encode()) for k, v in values.items()}


_HEX = re.compile(r"^[0-9a-f]{64}$")


def _job_view(job_id: str, info: JobInfo | None) -> dict[str, Any]:
    if info is None:  # accepted; its enqueue is still in the outbox
        return {"id": job_id, "queue": INGEST_QUEUE, "task": "ingest", "status": "queued"}
    return {
        "id": info.id,
        "queue": info.queue,
        "task": info.payload.get("task"),
        "status": JOB_STATUS.get(info.state, info.state),
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
        "error": info.last_error if info.state == "dead" else None,
        "last_error": info.last_error,
        "enqueued_at": info.enqueued_at,
        "updated_at": info.updated_at,
    }
