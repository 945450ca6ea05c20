"""Writes become jobs (202 + job id); workers report results and events back here.

Handlers parse, authenticate and call the catalog (`madbwpu_r.catalog`); the rules live there.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from madbwpu_r.api.datasets import check_dataset_name
from madbwpu_r.api.responses import NO_STORE, ORJSONResponse
from madbwpu_r.api.state import ApiState
from madbwpu_r.problems import ProblemError
from madbwpu_r.security import bearer_token, tokens_equal
from madbwpu_r.store import VersionInfo

log = logging.getLogger(__name__)

CSV_TYPES = {"text/csv", "application/csv"}


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


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


MAX_EVENT_BYTES = 1 << 20  # a worker's event is a small JSON object


def _refuse_declared_size(request: Request, limit: int) -> None:
    """A Content-Length over the limit is refused before a byte of the body is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ProblemError(
            413, detail=f"the body ({declared} bytes) exceeds the limit of {limit} bytes"
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
        accepted = await run_in_threadpool(state.catalog.accept_ingest, name, upload.name, key)
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    if accepted.duplicate:
        upload.unlink(missing_ok=True)
    status_url = link(state, request.app.url_path_for("job", job_id=accepted.job_id))
    return ORJSONResponse(
        {
            "job_id": accepted.job_id,
            "status_url": status_url,
            "dataset": name,
            "duplicate": accepted.duplicate,
        },
        status_code=202,
        headers={"Location": status_url, "Cache-Control": NO_STORE},
    )


async def get_job(request: Request) -> Response:
    view = await run_in_threadpool(
        _state(request).catalog.job_status, request.path_params["job_id"]
    )
    return ORJSONResponse(view, headers={"Cache-Control": NO_STORE})


async def job_event(request: Request) -> Response:
    """Events are keyed by job id and attempt: a re-run job's events change nothing twice."""
    state = _state(request)
    require_token(request, state.settings.worker_token, "worker token")
    job_id = request.path_params["job_id"]
    _refuse_declared_size(request, MAX_EVENT_BYTES)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            raise ProblemError(413, detail=f"an event is at most {MAX_EVENT_BYTES} bytes")
    try:
        event = orjson.loads(body)
        kind = event["kind"]
        attempt = int(event["attempt"])
    except (ValueError, KeyError, TypeError):
        raise ProblemError(
            400, detail="an event is a JSON object with 'kind' and 'attempt'"
        ) from None
    catalog = state.catalog
    if kind == "progress":
        try:
            fraction = float(event.get("fraction", 0.0))
        except (TypeError, ValueError):
            raise ProblemError(400, detail="'fraction' must be a number") from None
        message = str(event.get("message", ""))
        await run_in_threadpool(catalog.record_progress, job_id, attempt, fraction, message)
        return ORJSONResponse({"ok": True})
    if kind == "lookup":
        version = await run_in_threadpool(catalog.published_version, job_id)
        return ORJSONResponse({"version": version.to_json() if version else None})
    if kind != "version":
        raise ProblemError(400, detail=f"unknown event kind {kind!r}")
    try:
        version = VersionInfo.from_json(event["version"])
    except (KeyError, TypeError, ValueError):
        raise ProblemError(400, detail="a version event carries the version's manifest") from None
    published = await run_in_threadpool(catalog.publish_version, job_id, version)
    log.info(
        "version published",
        extra={
            "dataset": version.dataset,
            "digest": version.digest,
            "job_id": job_id,
            "applied": published.applied,
        },
    )
    return ORJSONResponse({"applied": published.applied, "purge": published.purge})


routes = [
    Route("/v1/datasets/{name}/ingest", ingest, methods=["POST"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"], name="job"),
    Route("/v1/internal/jobs/{job_id}/events", job_event, methods=["POST"]),
]
