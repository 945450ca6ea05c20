"""The ingest job: a CSV upload becomes a new immutable dataset version.

Idempotent by construction: the version file is content-addressed, and the API applies the
version event once per job, so a job re-run after a crash changes nothing twice. The upload
comes from the blob store and the version file goes to it; the worker's own disk holds only
scratch copies, removed when the job ends.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from madbwpu_r.blobs import BlobNotFound, BlobStore
from madbwpu_r.catalog import upload_key
from madbwpu_r.catalog.versions import VersionLibrary
from madbwpu_r.queue import Job
from madbwpu_r.worker.api_client import ApiClient
from madbwpu_r.worker.csvfile import CSVError, parse_csv
from madbwpu_r.worker.runner import PermanentError

PROGRESS_INTERVAL = 0.5


class IngestHandler:
    def __init__(self, blobs: BlobStore, api: ApiClient):
        self.blobs = blobs
        self.api = api
        self.versions = VersionLibrary(blobs)

    def _progress(self, job: Job, fraction: float, message: str) -> None:
        self.api.job_event(
            job.id,
            {"attempt": job.attempt, "kind": "progress", "fraction": fraction, "message": message},
        )

    def __call__(self, job: Job) -> dict[str, Any]:
        dataset = job.payload["dataset"]
        key = upload_key(Path(job.payload["upload"]).name)
        with tempfile.TemporaryDirectory(prefix="madbwpu-r-ingest-") as scratch:
            upload = Path(scratch) / "upload.csv"
            try:
                self.blobs.get_file(key, upload)
            except BlobNotFound:
                # A previous attempt finished and removed its upload before it could ack:
                # the API knows the version it published for this job.
                answer = self.api.job_event(job.id, {"attempt": job.attempt, "kind": "lookup"})
                if answer.get("version"):
                    return {"dataset": dataset, "digest": answer["version"]["digest"]}
                raise PermanentError(
                    f"the upload of job {job.id} is missing; ingest the file again"
                ) from None
            try:
                result = self._ingest(job, dataset, upload)
            except PermanentError:
                self.blobs.delete(key)  # the job is dead: nothing will read its upload again
                raise
            except Exception:
                if job.attempt >= job.max_attempts:
                    self.blobs.delete(key)  # the last attempt: the job dies with it
                raise
        self.blobs.delete(key)
        return result

    def _ingest(self, job: Job, dataset: str, upload: Path) -> dict[str, Any]:
        self._progress(job, 0.0, "validating")
        try:
            parsed = parse_csv(upload)
        except CSVError as exc:
            raise PermanentError(str(exc)) from None
        total = max(parsed.row_count, 1)
        last = time.monotonic()

        def on_rows(count: int) -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_INTERVAL:
                last = time.monotonic()
                self._progress(job, min(count / total, 0.99), f"{count} of {total} rows written")

        version = self.versions.write(dataset, parsed.schema, parsed.rows(), on_rows=on_rows)
        self.api.job_event(
            job.id, {"attempt": job.attempt, "kind": "version", "version": version.to_json()}
        )
        return {"dataset": dataset, "digest": version.digest, "row_count": version.row_count}
