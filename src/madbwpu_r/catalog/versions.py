"""Version files in the blob store: written once under their SHA-256, read via a local cache.

A worker writes a version's SQLite file in its own scratch directory, puts it into the blob
store under `content_key(sha256)` and reports that digest with the version; the API checks the
blob is there before it publishes. Readers open a verified local copy from a byte-bounded
`BlobCache` (version files are immutable, so a cached copy never goes stale).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from madbwpu_r.blobs import BlobCache, BlobNotFound, BlobStore, content_key
from madbwpu_r.store import Column, VersionInfo
from madbwpu_r.store.versions import VersionFiles, VersionReader

__all__ = ["MAX_READERS", "VersionLibrary"]

MAX_READERS = 256


class VersionLibrary:
    def __init__(self, blobs: BlobStore, cache: BlobCache | None = None) -> None:
        self.blobs = blobs
        self.cache = cache
        self._readers: dict[str, VersionReader] = {}
        self._lock = threading.Lock()

    def write(
        self,
        dataset: str,
        schema: Sequence[Column],
        rows: Iterable[Sequence[Any]],
        on_rows: Callable[[int], None] | None = None,
    ) -> VersionInfo:
        """Write the file locally, store it by its SHA-256; the same bytes again are a no-op."""
        with tempfile.TemporaryDirectory(prefix="madbwpu-r-version-") as scratch:
            files = VersionFiles(Path(scratch))
            version = files.write(dataset, schema, rows, on_rows=on_rows)
            stored = self.blobs.put_content(files.path(version.digest))
        return replace(version, sha256=stored.sha256)

    def has(self, version: VersionInfo) -> bool:
        """Whether the version's file is in the blob store (a worker put it there)."""
        return version.sha256 is not None and self.blobs.exists(content_key(version.sha256))

    def reader(self, version: VersionInfo) -> VersionReader:
        """A reader over a verified local copy; fetched into the cache on first use."""
        if self.cache is None or version.sha256 is None:
            raise BlobNotFound(f"version {version.digest} has no file in the blob store")
        path = self.cache.path(version.sha256)  # touches recency; re-fetches if evicted
        with self._lock:
            reader = self._readers.get(version.sha256)
            if reader is None or reader.path != path:
                reader = self._readers[version.sha256] = VersionReader(path, version.schema)
                while len(self._readers) > MAX_READERS:  # the oldest opened goes first
                    self._readers.pop(next(iter(self._readers)))
            return reader
