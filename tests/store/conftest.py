"""One store suite, run against every backend; a missing PostgreSQL skips locally, fails in CI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from madbwpu_r.store import MetadataStore, open_store
from tests.queue.queue_backends import base_url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from base_url(request.param, tmp_path)


@pytest.fixture
def make_store(store_url: str) -> Iterator[Callable[[], MetadataStore]]:
    """Factory: every call opens another handle on the same store (another process, say)."""
    opened: list[MetadataStore] = []

    def make() -> MetadataStore:
        store = open_store(store_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], MetadataStore]) -> MetadataStore:
    return make_store()
