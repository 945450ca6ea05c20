"""Blob store: `open_blobs(url)` picks the backend by URL scheme.

    file:///abs/dir                 embedded default: one file per blob under the directory
    s3://bucket/prefix?create=1     any S3-compatible store, configured by the AWS settings

S3 options: create, endpoint, addressing (path|virtual|auto), part_size (MiB), concurrency,
retries, connect_timeout, read_timeout (s). Keys are relative to the URL's directory/prefix.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
    BlobNotFound,
    BlobStoreError,
    BlobUnavailable,
    DigestMismatch,
    InvalidKey,
)
from madbwpu_r.blobs.port import BlobInfo, BlobReader, BlobStore, Source, check_key, content_key

__all__ = [
    "CACHE_SIZE_ENV",
    "DEFAULT_CACHE_BYTES",
    "BlobCache",
    "BlobConfigError",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobStoreError",
    "BlobUnavailable",
    "CacheStats",
    "DigestMismatch",
    "InvalidKey",
    "Source",
    "cache_size",
    "check_key",
    "content_key",
    "open_blobs",
    "parse_size",
]

# scheme -> (module, class, driver module, install hint)
_BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "file": ("madbwpu_r.blobs.file", "FileBlobStore", "os", "nothing (built in)"),
    "s3": ("madbwpu_r.blobs.s3", "S3BlobStore", "boto3", "uv add boto3"),
}


def open_blobs(url: str) -> BlobStore:
    """Open the blob store named by `url` (no network traffic until the first call)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _BACKENDS:
        known = ", ".join(sorted(_BACKENDS))
        raise BlobConfigError(f"unknown blob URL scheme {scheme!r} in {url!r} (known: {known})")
    module_name, class_name, driver, hint = _BACKENDS[scheme]
    try:
        importlib.import_module(driver)
    except ImportError:
        raise BlobConfigError(
            f"the {scheme} blob store needs the {driver!r} driver: run `{hint}`"
        ) from None
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    store: BlobStore = cls.from_url(url, options)
    return store
