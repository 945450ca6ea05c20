"""The ingest job: a CSV upload becomes a new immutable dataset version.

Idempotent by construction: the version file is content-addressed, and the API applies the
version event once per job, so a job re-run after a crash changes nothing twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from madbwpu_r.config import EnvPaths
from madbwpu_r.queue import Job
from madbwpu_r.store.versions import VersionFiles
from madbwpu_r.worker.api_client import ApiClient
from madbwpu_r.worker.csvfile import CSVError, parse_csv
from madbwpu_r.worker.runner import PermanentError

PROGRESS_INTERVAL = 0.5


class IngestHandler:
    def __init__(self, paths: EnvPaths, api: ApiClient):
        self.paths = paths
        self.api = api
        self.files = VersionFiles(paths.versions_dir)

    def _progress(self, job: Job, fraction: float, message: str) -> None:
        self.api.job_event(
            job.id,
            {"attempt": job.attempt, "kind": "progress", "fraction": fraction, "message": message},
        )

    def __call__(self, job: Job) -> dict[str, Any]:
        upload = self.paths.uploads_dir / Path(job.payload["upload"]).name
        try:
            return self._ingest(job, upload)
        except PermanentError:
            upload.unlink(missing_ok=True)  # the job is dead: nothing will read its upload again
            raise
        except Exception:
            if job.attempt >= job.max_attempts:
                upload.unlink(missing_ok=True)  # the last attempt: the job dies with it
            raise

    def _ingest(self, job: Job, upload: Path) -> dict[str, Any]:
        dataset = job.payload["dataset"]
        if not upload.exists():
            # A previous attempt finished and removed its upload before it could ack:
            # the API knows the version it published for this job.
            answer = self.api.job_event(job.id, {"attempt": job.attempt, "kind": "lookup"})
            if answer.get("version"):
                return {"dataset": dataset, "digest": answer["version"]["digest"]}
            raise PermanentError(f"the upload of job {job.id} is missing; ingest the file again")
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

        version = self.files.write(dataset, parsed.schema, parsed.rows(), on_rows=on_rows)
        self.api.job_event(
            job.id, {"attempt": job.attempt, "kind": "version", "version": version.to_json()}
        )
        upload.unlink(missing_ok=True)
        return {"dataset": dataset, "digest": version.digest, "row_count": version.row_count}
