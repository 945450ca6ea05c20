"""What one API process holds: its environment's ports, and the catalog over them."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from madbwpu_r.blobs import BlobCache, BlobStore, open_blobs
from madbwpu_r.catalog import INGEST_QUEUE, Catalog, OutboxRelay, deliverers
from madbwpu_r.catalog.retention import DEFAULT_RETENTION, Retention
from madbwpu_r.catalog.versions import VersionLibrary
from madbwpu_r.config import EnvPaths
from madbwpu_r.purge import Purger, open_purger
from madbwpu_r.queue import Queue, open_queue
from madbwpu_r.store import MetadataStore, open_store

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
    blob_url: str | None = None
    cache_dir: Path | None = None
    cache_size: str | None = None
    edges: list[str] = field(default_factory=list)
    redis_url: str | None = None
    redis_channel: str = "madbwpu-r:edge:purge"
    max_upload_bytes: int = 1 << 30
    retention: float = DEFAULT_RETENTION
    public_url: str | None = None  # links the API gives out are relative without one

    @property
    def paths(self) -> EnvPaths:
        return EnvPaths(self.data_dir, self.env)

    def blobs_url(self) -> str:
        return self.blob_url or self.paths.default_blob_url


def default_cache_dir(blob_url: str) -> Path:
    """A local directory per blob store, shared by the processes of this machine."""
    name = hashlib.sha256(blob_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "madbwpu-r-cache" / name


class ApiState:
    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.paths = settings.paths
        with contextlib.ExitStack() as opened:
            self.store: MetadataStore = open_store(
                settings.store_url or self.paths.default_store_url
            )
            opened.callback(self.store.close)
            self.queue: Queue = open_queue(settings.queue_url or self.paths.default_queue_url)
            opened.callback(self.queue.close)
            blob_url = settings.blobs_url()
            self.blobs: BlobStore = open_blobs(blob_url)
            opened.callback(self.blobs.close)
            cache = BlobCache(
                self.blobs,
                settings.cache_dir or default_cache_dir(blob_url),
                settings.cache_size,
            )
            # A bad --edge / --redis-url must not leave the ports above open.
            self.invalidator: Purger = open_purger(
                [*settings.edges, *([settings.redis_url] if settings.redis_url else [])],
                token=settings.purge_token,
                channel=settings.redis_channel,
            )
            opened.pop_all()
        self.versions = VersionLibrary(self.blobs, cache)
        self.relay = OutboxRelay(self.store, deliverers(self.queue, self.invalidator))
        self.catalog = Catalog(
            self.store,
            self.queue,
            self.relay,
            has_version=self.versions.has,
        )
        self.retention = Retention(self.store, self.queue, self.blobs, settings.retention)

    def engines(self) -> dict[str, str]:
        """Each port's engine, by its URL's scheme (never the URL: it may carry a password)."""
        s, paths = self.settings, self.paths
        urls = {
            "store": s.store_url or paths.default_store_url,
            "queue": s.queue_url or paths.default_queue_url,
            "blobs": s.blobs_url(),
        }
        return {port: urlsplit(url).scheme for port, url in urls.items()}

    def close(self) -> None:
        self.retention.stop()
        self.relay.stop()
        self.invalidator.close()
        self.queue.close()
        self.store.close()
        self.blobs.close()
