"""The API tier: a stateless Starlette app over its environment's store, queue and versions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from madbwpu_r.api import audit, datasets, health, jobs, release
from madbwpu_r.api.state import INGEST_QUEUE, ApiSettings, ApiState
from madbwpu_r.catalog import Conflict, NotFound
from madbwpu_r.problems import install_problem_handlers, problem_response
from madbwpu_r.queue import QueueUnavailable
from madbwpu_r.queue.metrics import QueueCollector
from madbwpu_r.store import StoreUnavailable


class MetricsMiddleware:
    """Counts requests by route template, so that label cardinality stays bounded."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter(
            "madbwpu_r_api_requests", "API requests", ["route", "status"], registry=registry
        )
        self.latency = Histogram(
            "madbwpu_r_api_request_seconds", "API request latency", ["route"], registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.requests.labels(name, str(status)).inc()
            self.latency.labels(name).observe(time.perf_counter() - start)


async def _refused(request: Request, exc: Exception) -> Response:
    """The service layer's refusals, and an engine that is down, as problem+json."""
    if isinstance(exc, NotFound):
        return problem_response(404, detail=str(exc))
    if isinstance(exc, Conflict):
        return problem_response(409, detail=str(exc))
    engine = "metadata store" if isinstance(exc, StoreUnavailable) else "job queue"
    return problem_response(
        503, detail=f"the {engine} is unavailable: {exc}", headers={"Retry-After": "5"}
    )


def create_app(settings: ApiSettings) -> Starlette:
    state = ApiState(settings)
    audit_api = audit.AuditApi(settings.data_dir, settings.env, settings.store_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.relay.start()  # delivers first what a killed predecessor left in the outbox
        state.retention.start()
        audit_api.start()
        yield
        audit_api.close()
        app.state.release.close()
        state.close()

    # Release routes first: in production they refuse the direct ingest route of `jobs`.
    routes = release.routes_for(settings.env) + health.routes + datasets.routes + jobs.routes
    routes += audit.routes
    app = Starlette(routes=routes, lifespan=lifespan)
    # Starlette would answer `/path/` with a redirect to an absolute URL built from the Host
    # this process saw (its own address, behind the edge): a plain 404 problem instead.
    app.router.redirect_slashes = False
    app.state.audit = audit_api
    release.attach(app, state)
    registry = CollectorRegistry()
    registry.register(QueueCollector(state.queue, [INGEST_QUEUE]))
    app.state.api = state
    app.state.registry = registry
    install_problem_handlers(app)
    for exc in (NotFound, Conflict, StoreUnavailable, QueueUnavailable):
        app.add_exception_handler(exc, _refused)
    app.add_middleware(MetricsMiddleware, registry=registry)
    return app
