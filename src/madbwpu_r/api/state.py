"""What one API process holds: its environment's ports, and the catalog over them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from madbwpu_r.catalog import INGEST_QUEUE, Catalog, OutboxRelay, deliverers
from madbwpu_r.config import EnvPaths
from madbwpu_r.purge import Purger, open_purger
from madbwpu_r.queue import Queue, open_queue
from madbwpu_r.store import MetadataStore, open_store
from madbwpu_r.store.versions import VersionFiles

__all__ = ["INGEST_QUEUE", "ApiSettings", "ApiState"]


@dataclass
class ApiSettings:
    env: str
    data_dir: Path
    write_token: str
    worker_token: str
    purge_token: str
    queue_url: str | None = None
    store_url: str | None = None
    edges: list[str] = field(default_factory=list)
    redis_url: str | None = None
    redis_channel: str = "madbwpu-r:edge:purge"
    max_upload_bytes: int = 1 << 30
    public_url: str | None = None  # links the API gives out are relative without one

    @property
    def paths(self) -> EnvPaths:
        return EnvPaths(self.data_dir, self.env)


class ApiState:
    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.paths = settings.paths.ensure()
        self.store: MetadataStore = open_store(settings.store_url or self.paths.default_store_url)
        try:
            self.queue: Queue = open_queue(settings.queue_url or self.paths.default_queue_url)
        except BaseException:
            self.store.close()
            raise
        self.versions = VersionFiles(self.paths.versions_dir)
        self.invalidator: Purger = open_purger(
            [*settings.edges, *([settings.redis_url] if settings.redis_url else [])],
            token=settings.purge_token,
            channel=settings.redis_channel,
        )
        self.relay = OutboxRelay(self.store, deliverers(self.queue, self.invalidator))
        self.catalog = Catalog(
            self.store,
            self.queue,
            self.relay,
            has_version=lambda digest: self.versions.path(digest).exists(),
        )

    def close(self) -> None:
        self.relay.stop()
        self.invalidator.close()
        self.queue.close()
        self.store.close()
