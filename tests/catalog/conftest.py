"""A catalog over real engines: the SQLite store and queue in one file, as embedded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from madbwpu_r.catalog import Catalog, OutboxRelay, deliverers
from madbwpu_r.queue import Queue, open_queue
from madbwpu_r.store import MetadataStore, open_store


class RecordingPurger:
    """Stands in for the edges' fan-out only to record what reached it; the engines are real."""

    def __init__(self) -> None:
        self.purges: list[dict[str, Any]] = []
        self.fail = False

    def purge(self, keys=(), urls=(), soft=False, sequence=None) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("redis down")
        self.purges.append({"keys": list(keys), "sequence": sequence})
        return {"ok": True, "seq": sequence[1] if sequence else None}


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[MetadataStore, Queue]]:
    url = f"sqlite:///{tmp_path}/state.sqlite"
    store, queue = open_store(url), open_queue(url + "?max_attempts=1")
    yield store, queue
    queue.close()
    store.close()


@pytest.fixture
def purger() -> RecordingPurger:
    return RecordingPurger()


@pytest.fixture
def catalog(engines, purger) -> Catalog:
    store, queue = engines
    return Catalog(store, queue, OutboxRelay(store, deliverers(queue, purger)))
