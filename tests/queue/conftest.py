"""One queue suite, run against every backend (STYLE.md point 3).

A missing Redis/PostgreSQL server skips locally and fails when env CI is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from madbwpu_r.queue import Queue, open_queue
from tests.queue.queue_backends import BACKENDS, base_url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def queue_url(backend: str, tmp_path: Path) -> Iterator[str]:
    yield from base_url(backend, tmp_path)


@pytest.fixture
def make_queue(queue_url: str) -> Iterator[Callable[..., Queue]]:
    """Factory: make_queue(lease=0.5, backoff=0.05, max_attempts=3) -> an open queue."""
    opened: list[Queue] = []

    def make(**options: object) -> Queue:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        sep = "&" if "?" in queue_url else "?"
        q = open_queue(queue_url + (sep + query if query else ""))
        opened.append(q)
        return q

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def q(make_queue: Callable[..., Queue]) -> Queue:
    return make_queue(lease=0.5, backoff=0.05, backoff_max=0.1, max_attempts=3)
