"""A catalog over real engines: the SQLite store and queue in one file, as embedded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from madbwpu_r.catalog import Catalog, OutboxRelay, deliverers
from madbwpu_r.purge import Delivery, PurgeMessage, Purger
from madbwpu_r.queue import Queue, open_queue
from madbwpu_r.store import MetadataStore, open_store


class RecordingPurger(Purger):
    """The real Purger port with a backend that only records what reached it (or fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.purges: list[dict[str, Any]] = []
        self.fail = False

    def _deliver(self, message: PurgeMessage) -> Delivery:
        if self.fail:
            raise ConnectionError("redis down")
        self.purges.append({"keys": list(message.keys), "sequence": (message.epoch, message.seq)})
        return Delivery()

    async def _adeliver(self, message: PurgeMessage) -> Delivery:
        return self._deliver(message)


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
