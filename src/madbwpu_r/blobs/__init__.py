"""Blob store: `open_blobs(url)` picks the backend by URL scheme.

    file:///abs/dir                 embedded default: one file per blob under the directory
    s3://bucket/prefix?create=1     any S3-compatible store, configured by the AWS settings

S3 options: create, endpoint, addressing (path|virtual|auto), part_size (MiB), concurrency,
retries, connect_timeout, read_timeout (s). Keys are relative to the URL's directory/prefix.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from madbwpu_r._drivers import Backend, backend_class
from madbwpu_r.blobs.cache import (
    CACHE_SIZE_ENV,
    DEFAULT_CACHE_BYTES,
    BlobCache,
    CacheStats,
    cache_size,
    parse_size,
)
from madbwpu_r.blobs.errors import (
    BlobConfigError,
    BlobExists,
    BlobNotFound,
    BlobStoreError,
    BlobUnavailable,
    DigestMismatch,
    InvalidKey,
)
from madbwpu_r.blobs.port import BlobInfo, BlobReader, BlobStore, Source, check_key, content_key
from madbwpu_r.blobs.streams import IterSource, put_async

__all__ = [
    "CACHE_SIZE_ENV",
    "DEFAULT_CACHE_BYTES",
    "BlobCache",
    "BlobConfigError",
    "BlobExists",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobStoreError",
    "BlobUnavailable",
    "CacheStats",
    "DigestMismatch",
    "InvalidKey",
    "IterSource",
    "Source",
    "cache_size",
    "check_key",
    "content_key",
    "open_blobs",
    "parse_size",
    "put_async",
]

_BACKENDS: dict[str, Backend] = {
    "file": Backend("madbwpu_r.blobs.file", "FileBlobStore"),
    "s3": Backend("madbwpu_r.blobs.s3", "S3BlobStore", ("boto3",), "uv add boto3"),
}


def open_blobs(url: str) -> BlobStore:
    """Open the blob store named by `url` (no network traffic until the first call)."""
    cls = backend_class(url, _BACKENDS, "blob store", BlobConfigError)
    options = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    store: BlobStore = cls.from_url(url, options)
    return store
