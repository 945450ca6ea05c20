"""One purge suite over every backend: real edge processes, and a real Redis for pub/sub.

A missing Redis skips locally and fails when env CI is set (see redis_url_or_skip).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from madbwpu_r.purge import Purger, open_purger
from tests.edge.conftest import (  # noqa: F401  (fixtures shared with the edge's tests)
    TOKEN,
    Edge,
    _close_helper_client,
    free_port,
    make_edge,
    origin,
    redis_url_or_skip,
    uniq,
)
from tests.edge.test_edge_purge import _wait_for

BACKENDS = ["http", "redis"]


@dataclass
class Deployment:
    """Edges of one backend, and how to reach them (or a dead target) with a purger."""

    backend: str
    edges: list[Edge]
    targets: list[str]
    channel: str

    def purger(self, **kwargs: object) -> Purger:
        return open_purger(self.targets, token=TOKEN, channel=self.channel, **kwargs)  # type: ignore[arg-type]

    def dead_target(self) -> str:
        port = free_port()
        return (
            f"http://127.0.0.1:{port}" if self.backend == "http" else f"redis://127.0.0.1:{port}/0"
        )


@pytest.fixture(params=BACKENDS)
def deployment(request: pytest.FixtureRequest, origin, make_edge) -> Iterator[Deployment]:  # noqa: F811
    backend: str = request.param
    channel = f"madbwpu-r-test:purge:{uuid.uuid4().hex}"
    if backend == "http":
        edges = make_edge(origin.url, name="h", count=2)
        yield Deployment(backend, edges, [e.url for e in edges], channel)
        return
    redis_url = redis_url_or_skip()
    edges = make_edge(
        origin.url, "--redis-url", redis_url, "--redis-channel", channel, name="r", count=2
    )
    _wait_for(lambda: all(e.stats()["redis"]["connected"] for e in edges))
    yield Deployment(backend, edges, [redis_url], channel)


@pytest.fixture
def wait_for() -> Callable[..., None]:
    return _wait_for
