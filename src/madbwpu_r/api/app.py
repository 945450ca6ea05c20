"""The API tier: a stateless Starlette app over its environment's store, queue and versions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from madbwpu_r.api import datasets, health, jobs
from madbwpu_r.api.state import INGEST_QUEUE, ApiSettings, ApiState
from madbwpu_r.problems import install_problem_handlers
from madbwpu_r.queue.metrics import QueueCollector
from madbwpu_r.worker.supervisor import read_status


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

        async def send_status(message: dict) -> None:
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


def supervised_workers(state: ApiState) -> dict[str, int]:
    """Workers per queue as the local supervisor last wrote them (none when it does not run)."""
    status = read_status(state.paths.supervisor_status) or {}
    if not status.get("running"):
        return {}
    return {queue: info["workers"] for queue, info in status.get("queues", {}).items()}


def create_app(settings: ApiSettings) -> Starlette:
    state = ApiState(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.close()

    app = Starlette(routes=health.routes + datasets.routes + jobs.routes, lifespan=lifespan)
    # Starlette would answer `/path/` with a redirect to an absolute URL built from the Host
    # this process saw (its own address, behind the edge): a plain 404 problem instead.
    app.router.redirect_slashes = False
    registry = CollectorRegistry()
    registry.register(
        QueueCollector(state.queue, [INGEST_QUEUE], workers=lambda: supervised_workers(state))
    )
    app.state.api = state
    app.state.registry = registry
    install_problem_handlers(app)
    app.add_middleware(MetricsMiddleware, registry=registry)
    return app
