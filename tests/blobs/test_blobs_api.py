"""The package's public surface and its registry (STYLE.md points 7 and 9)."""

from __future__ import annotations

import pytest

import madbwpu_r.blobs as blobs
from madbwpu_r._drivers import Backend
from madbwpu_r.blobs import BlobConfigError, open_blobs


def test_exported_names() -> None:
    assert sorted(blobs.__all__) == sorted(
        [
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
    )
    for name in blobs.__all__:
        assert getattr(blobs, name) is not None


@pytest.mark.parametrize("url", ["", "gs://bucket", "azure://x", "not a url"])
def test_unknown_schemes_name_the_known_ones(url: str) -> None:
    with pytest.raises(BlobConfigError, match="known: file, s3"):
        open_blobs(url)


def test_missing_driver_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        blobs._BACKENDS,
        "s3",
        Backend("madbwpu_r.blobs.s3", "S3BlobStore", ("no_such_driver",), "uv add boto3"),
    )
    with pytest.raises(BlobConfigError, match="run `uv add boto3`"):
        open_blobs("s3://bucket")
