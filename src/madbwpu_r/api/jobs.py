"""Writes become jobs (202 + job id); workers report results and events back here."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from madbwpu_r.api.datasets import check_dataset_name
from madbwpu_r.api.responses import NO_STORE, ORJSONResponse
from madbwpu_r.api.state import INGEST_QUEUE, ApiState
from madbwpu_r.problems import ProblemError
from madbwpu_r.queue import JobInfo
from madbwpu_r.security import bearer_token, tokens_equal
from madbwpu_r.store.port import IngestRecord, Progress, VersionInfo

log = logging.getLogger(__name__)

# The queue's states, as a client of the API sees them.
JOB_STATUS = {
    "scheduled": "queued",
    "ready": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "dead": "failed",
}
CSV_TYPES = {"text/csv", "application/csv"}


def _state(request: Request) -> ApiState:
    return request.app.state.api


def require_token(request: Request, expected: str, what: str) -> None:
    given = bearer_token(request)
    if given is None:
        raise ProblemError(
            401,
            detail=f"this endpoint needs the {what} as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not tokens_equal(given, expected):
        raise ProblemError(403, detail=f"the credential given is not the {what}")


def _refuse_declared_size(request: Request, limit: int) -> None:
    """A Content-Length over the limit is refused before a byte of the body is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ProblemError(
            413, detail=f"the upload ({declared} bytes) exceeds the limit of {limit} bytes"
        )


def link(state: ApiState, path: str) -> str:
    """Links given out are relative, or on the configured public URL: never this process's own
    address, which a client behind the edge must not see (or use)."""
    return (state.settings.public_url or "") + path


async def _spool(request: Request, target: Path, limit: int) -> None:
    """Stream the body to disk and fsync it before the job that reads it is enqueued."""
    part = target.with_name(target.name + ".part")
    size = 0
    try:
        with part.open("wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ProblemError(413, detail=f"the upload exceeds the limit of {limit} bytes")
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


async def ingest(request: Request) -> Response:
    state = _state(request)
    require_token(request, state.settings.write_token, "write token")
    name = check_dataset_name(request.path_params["name"])
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in CSV_TYPES:
        raise ProblemError(
            415,
            detail=f"send the file as 'Content-Type: text/csv' (got {content_type or 'none'!r})",
        )
    _refuse_declared_size(request, state.settings.max_upload_bytes)
    upload = state.paths.uploads_dir / f"{uuid.uuid4().hex}.csv"
    await _spool(request, upload, state.settings.max_upload_bytes)
    key = request.headers.get("idempotency-key")
    try:
        job_id, created = await run_in_threadpool(_accept, state, name, upload, key)
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    if not created:
        upload.unlink(missing_ok=True)
    status_url = link(state, request.app.url_path_for("job", job_id=job_id))
    return ORJSONResponse(
        {"job_id": job_id, "status_url": status_url, "dataset": name, "duplicate": not created},
        status_code=202,
        headers={"Location": status_url, "Cache-Control": NO_STORE},
    )


def _accept(state: ApiState, name: str, upload: Path, key: str | None) -> tuple[str, bool]:
    """The ingest record and its job commit together, so no accepted request is without its job.

    With a queue on another engine the job is enqueued first: if the record then fails, the
    request is not accepted and the orphan job fails on its missing record.
    """
    with state.store.transaction() as tx:
        job_id = state.queue.enqueue(
            INGEST_QUEUE,
            {"task": "ingest", "dataset": name, "upload": upload.name},
            idempotency_key=f"ingest:{name}:{key}" if key else None,
            tx=tx if state.queue_joins_store else None,
        )
        if state.store.ingest(job_id) is not None:
            return job_id, False
        state.store.record_ingest(
            tx,
            IngestRecord(job_id=job_id, dataset=name, upload=upload.name, accepted_at=time.time()),
        )
        return job_id, True


def job_view(state: ApiState, info: JobInfo) -> dict[str, Any]:
    view: dict[str, Any] = {
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
    record = state.store.ingest(info.id)
    if record is not None:
        view["dataset"] = record.dataset
        view["version"] = record.version_digest
    progress = state.store.progress(info.id)
    if progress is not None:
        fraction = 1.0 if info.state == "succeeded" else progress.fraction
        view["progress"] = {"fraction": fraction, "message": progress.message}
    return view


def get_job(request: Request) -> Response:
    state = _state(request)
    job_id = request.path_params["job_id"]
    info = state.queue.get(job_id)
    if info is None:
        raise ProblemError(404, detail=f"no job with id {job_id!r}")
    return ORJSONResponse(job_view(state, info), headers={"Cache-Control": NO_STORE})


async def job_event(request: Request) -> Response:
    """Events are keyed by job id and attempt: a re-run job's events change nothing twice."""
    state = _state(request)
    require_token(request, state.settings.worker_token, "worker token")
    job_id = request.path_params["job_id"]
    try:
        event = await request.json()
        kind = event["kind"]
        attempt = int(event["attempt"])
    except (ValueError, KeyError, TypeError):
        raise ProblemError(
            400, detail="an event is a JSON object with 'kind' and 'attempt'"
        ) from None
    record = await run_in_threadpool(state.store.ingest, job_id)
    if record is None:
        raise ProblemError(404, detail=f"no ingest job with id {job_id!r}")
    if kind == "progress":
        progress = Progress(
            attempt=attempt,
            fraction=float(event.get("fraction", 0.0)),
            message=str(event.get("message", "")),
            updated_at=time.time(),
        )
        await run_in_threadpool(state.store.set_progress, job_id, progress)
        return ORJSONResponse({"ok": True})
    if kind == "lookup":
        version = record.version_digest and await run_in_threadpool(
            state.store.version, record.dataset, record.version_digest
        )
        return ORJSONResponse({"version": version.to_json() if version else None})
    if kind != "version":
        raise ProblemError(400, detail=f"unknown event kind {kind!r}")
    try:
        version = VersionInfo.from_json(event["version"])
    except (KeyError, TypeError, ValueError):
        raise ProblemError(400, detail="a version event carries the version's manifest") from None
    if version.dataset != record.dataset:
        raise ProblemError(
            409, detail=f"job {job_id} ingests {record.dataset!r}, not {version.dataset!r}"
        )
    if not state.versions.path(version.digest).exists():
        raise ProblemError(409, detail=f"version file {version.digest} is not in the version store")
    applied = await run_in_threadpool(state.store.record_version, job_id, version)
    # Purge even when already applied: the attempt that applied it may have died before purging.
    report = await state.invalidator.apurge(keys=[f"dataset:{version.dataset}", "datasets"])
    log.info(
        "version published",
        extra={
            "dataset": version.dataset,
            "digest": version.digest,
            "job_id": job_id,
            "applied": applied,
        },
    )
    return ORJSONResponse({"applied": applied, "purge": report})


routes = [
    Route("/v1/datasets/{name}/ingest", ingest, methods=["POST"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"], name="job"),
    Route("/v1/internal/jobs/{job_id}/events", job_event, methods=["POST"]),
]
