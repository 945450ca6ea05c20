"""Liveness, readiness (the heartbeat a deploy checks) and Prometheus metrics."""

from __future__ import annotations

import hashlib
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from madbwpu_r.api.responses import NO_STORE, ORJSONResponse
from madbwpu_r.api.state import INGEST_QUEUE, ApiState
from madbwpu_r.blobs import BlobStoreError
from madbwpu_r.queue.errors import QueueError
from madbwpu_r.store import StoreError


def healthz(request: Request) -> Response:
    return ORJSONResponse({"status": "ok"}, headers={"Cache-Control": NO_STORE})


def heartbeat(request: Request) -> Response:
    """200 when the store, the queue and the blob store answer, 503 otherwise (each check
    names its engine); never cached by the edge."""
    state: ApiState = request.app.state.api
    engines = state.engines()
    checks: dict[str, dict[str, Any]] = {}
    datasets: dict[str, str] = {}
    try:
        state.store.ping()
        datasets = {d.name: d.current.digest for d in state.store.datasets() if d.current}
        checks["store"] = {"ok": True, "engine": engines["store"]}
    except StoreError as exc:
        checks["store"] = {"ok": False, "engine": engines["store"], "error": str(exc)}
    try:
        depth = state.queue.depth(INGEST_QUEUE)
        checks["queue"] = {
            "ok": True,
            "engine": engines["queue"],
            "ready": depth.ready,
            "in_flight": depth.in_flight,
            "scheduled": depth.scheduled,
            "dead": depth.dead,
        }
    except QueueError as exc:
        checks["queue"] = {"ok": False, "engine": engines["queue"], "error": str(exc)}
    try:
        state.blobs.ping()
        checks["blobs"] = {"ok": True, "engine": engines["blobs"]}
    except BlobStoreError as exc:
        checks["blobs"] = {"ok": False, "engine": engines["blobs"], "error": str(exc)}
    release = getattr(request.app.state, "release", None)
    if release is not None and release.env == "production":
        served = release.guard.current()
        checks["release"] = {
            "ok": release.guard.problem is None,
            "release_id": served.release_id if served else None,
            **({"error": release.guard.problem} if release.guard.problem else {}),
        }
    healthy = all(c["ok"] for c in checks.values())
    state_digest = hashlib.sha256(
        "\n".join(f"{k}={v}" for k, v in sorted(datasets.items())).encode()
    ).hexdigest()
    body = {
        "environment": state.settings.env,
        "status": "ok" if healthy else "unhealthy",
        "data": {"state_digest": state_digest, "datasets": datasets},
        "checks": checks,
        "edges": len(state.settings.edges),
    }
    return ORJSONResponse(
        body, status_code=200 if healthy else 503, headers={"Cache-Control": NO_STORE}
    )


def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": NO_STORE},
    )


routes = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/v1/heartbeat", heartbeat, methods=["GET", "HEAD"]),
    Route("/metrics", metrics, methods=["GET"]),
]
