"""Writes become jobs (202 + job id); workers report results and events back here.

Handlers parse, authenticate and call the catalog (`madbwpu_r.catalog`); the rules live there.
"""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

import anyio.from_thread
import anyio.lowlevel
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from madbwpu_r.api.datasets import check_dataset_name
from madbwpu_r.api.responses import NO_STORE, ORJSONResponse
from madbwpu_r.api.state import ApiState
from madbwpu_r.blobs.port import CHUNK
from madbwpu_r.bodies import read_limited, refuse_declared_size, too_large
from madbwpu_r.catalog import upload_key
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


class _Body(io.RawIOBase):
    """The request body as a blocking stream, read by the blob store's put in a worker thread.

    Each read pulls the next chunks from the event loop, so memory holds about one chunk
    whatever the upload's size; past `limit` bytes the read raises 413 and the put stores
    nothing. Made on the event loop, it may be read from any thread (S3 uploads read from
    their own transfer threads).
    """

    def __init__(self, request: Request, limit: int) -> None:
        super().__init__()
        self._loop = anyio.lowlevel.current_token()
        self._chunks = request.stream()
        self._limit = limit
        self._buffer = b""
        self._eof = False
        self.size = 0

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def readinto(self, buffer: Any) -> int:
        while not self._buffer and not self._eof:
            chunk = anyio.from_thread.run(self._next, token=self._loop)
            if chunk is None:
                self._eof = True
                break
            self.size += len(chunk)
            if self.size > self._limit:
                raise too_large(self._limit, "the upload")
            self._buffer = chunk
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def stream(self) -> io.BufferedReader:
        return io.BufferedReader(self, buffer_size=CHUNK)


MAX_EVENT_BYTES = 1 << 20  # a worker's event is a small JSON object


def link(state: ApiState, path: str) -> str:
    """Links given out are relative, or on the configured public URL: never this process's own
    address, which a client behind the edge must not see (or use)."""
    return (state.settings.public_url or "") + path


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
    refuse_declared_size(request, state.settings.max_upload_bytes)
    upload = f"{uuid.uuid4().hex}.csv"
    body = _Body(request, state.settings.max_upload_bytes)
    await run_in_threadpool(state.blobs.put, upload_key(upload), body.stream())
    key = request.headers.get("idempotency-key")
    try:
        accepted = await run_in_threadpool(state.catalog.accept_ingest, name, upload, key)
    except BaseException:
        await run_in_threadpool(state.blobs.delete, upload_key(upload))
        raise
    if accepted.duplicate:
        await run_in_threadpool(state.blobs.delete, upload_key(upload))
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
    body = await read_limited(request, MAX_EVENT_BYTES, "an event")
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
