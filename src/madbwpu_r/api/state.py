"""What one API process holds: its environment's store, queue, version files and edge client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from madbwpu_r.config import EnvPaths
from madbwpu_r.edge.client import Invalidator
from madbwpu_r.queue import Queue, open_queue
from madbwpu_r.store.port import MetadataStore
from madbwpu_r.store.sqlite import SQLiteMetadataStore
from madbwpu_r.store.versions import VersionFiles

INGEST_QUEUE = "ingest"


@dataclass
class ApiSettings:
    env: str
    data_dir: Path
    write_token: str
    worker_token: str
    purge_token: str
    queue_url: str | None = None
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
        self.store: MetadataStore = SQLiteMetadataStore(self.paths.state_db)
        queue_url = settings.queue_url or self.paths.default_queue_url
        self.queue: Queue = open_queue(queue_url)
        # Only a queue in the store's own SQLite file can join its transactions.
        self.queue_joins_store = queue_url == self.paths.default_queue_url
        self.versions = VersionFiles(self.paths.versions_dir)
        self.invalidator = Invalidator(
            edges=list(settings.edges),
            token=settings.purge_token,
            redis_url=settings.redis_url,
            channel=settings.redis_channel,
        )

    def close(self) -> None:
        self.queue.close()
        self.store.close()
