"""The local cache of immutable blobs, over every backend: bound, LRU order, corruption, sharing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from madbwpu_r.blobs import (
    CACHE_SIZE_ENV,
    DEFAULT_CACHE_BYTES,
    BlobCache,
    BlobConfigError,
    BlobNotFound,
    BlobStore,
    DigestMismatch,
    InvalidKey,
    cache_size,
    content_key,
    parse_size,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(store: BlobStore, n: int, size: int = 1000) -> str:
    data = bytes([n % 256]) * size
    return store.put_content(data).sha256 or ""


def cached(cache: BlobCache) -> set[str]:
    return {p.name for p in cache.root.glob("??/*") if not p.name.startswith(".")}


def test_miss_fetches_then_hits_locally(store: BlobStore, tmp_path: Path) -> None:
    digest = blob(store, 1)
    cache = BlobCache(store, tmp_path / "cache", max_bytes=10_000)
    path = cache.path(digest)
    assert path.read_bytes() == b"\x01" * 1000
    store.delete(content_key(digest))  # a hit no longer needs the store
    assert cache.path(digest) == path and path.read_bytes() == b"\x01" * 1000
    assert BlobCache(store, tmp_path / "cache", 10_000).path(digest) == path  # another process


def test_bounded_by_bytes_least_recently_used_goes_first(store: BlobStore, tmp_path: Path) -> None:
    a, b, c, d = (blob(store, n) for n in range(4))
    cache = BlobCache(store, tmp_path / "cache", max_bytes=3000, grace=0)
    for digest in (a, b, c):
        cache.path(digest)
    assert cache.stats().bytes == 3000
    cache.path(a)  # a is now the most recently used; b the least
    cache.path(d)
    assert cached(cache) == {a, c, d}
    assert cache.stats().bytes <= cache.max_bytes
    cache.path(b)  # fetched again from the store
    assert cached(cache) == {a, d, b}


def test_a_blob_larger_than_the_bound_is_still_served(store: BlobStore, tmp_path: Path) -> None:
    small, big = blob(store, 1, 100), blob(store, 2, 5000)
    cache = BlobCache(store, tmp_path / "cache", max_bytes=1000, grace=0)
    cache.path(small)
    assert cache.path(big).stat().st_size == 5000
    assert cached(cache) == {big}
    cache.path(small)
    assert cached(cache) == {small}


def test_corrupted_copy_is_detected_and_fetched_again(store: BlobStore, tmp_path: Path) -> None:
    digest = blob(store, 7)
    cache = BlobCache(store, tmp_path / "cache", max_bytes=10_000)
    path = cache.path(digest)
    path.write_bytes(b"garbage")  # size and mtime change
    assert cache.path(digest).read_bytes() == b"\x07" * 1000


def test_same_size_corruption_is_caught_by_the_next_process(
    store: BlobStore, tmp_path: Path
) -> None:
    digest = blob(store, 8)
    path = BlobCache(store, tmp_path / "cache", max_bytes=10_000).path(digest)
    st = path.stat()
    with open(path, "r+b") as f:  # flip one byte in place, then restore the mtime
        f.seek(500)
        f.write(b"\xff")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    fresh = BlobCache(store, tmp_path / "cache", max_bytes=10_000)
    assert fresh.path(digest).read_bytes() == b"\x08" * 1000


def test_corrupt_store_copy_is_refused_and_not_cached(store: BlobStore, tmp_path: Path) -> None:
    digest = sha(b"genuine")
    store.put(content_key(digest), b"damaged")
    cache = BlobCache(store, tmp_path / "cache", max_bytes=10_000)
    with pytest.raises(DigestMismatch):
        cache.path(digest)
    assert cached(cache) == set()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.stat().st_size] == []


def test_unknown_and_bad_digests(store: BlobStore, tmp_path: Path) -> None:
    cache = BlobCache(store, tmp_path / "cache", max_bytes=10_000)
    with pytest.raises(BlobNotFound):
        cache.path(sha(b"never stored"))
    for bad in ("", "../../etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(InvalidKey):
            cache.path(bad)


def test_explicit_key(store: BlobStore, tmp_path: Path) -> None:
    store.put("versions/v1.sqlite", b"version bytes")
    cache = BlobCache(store, tmp_path / "cache", max_bytes=10_000)
    path = cache.path(sha(b"version bytes"), key="versions/v1.sqlite")
    assert path.read_bytes() == b"version bytes"


SHARED = """
import sys
from madbwpu_r.blobs import BlobCache, open_blobs
store = open_blobs(sys.argv[1])
cache = BlobCache(store, sys.argv[2], max_bytes=int(sys.argv[3]), grace=0)
for _ in range(5):
    for digest in sys.argv[4:]:
        with cache.open(digest) as f:
            assert len(f.read()) == 1000
print("ok")
"""


def test_processes_share_one_cache_directory(
    store: BlobStore, blob_url: str, tmp_path: Path
) -> None:
    digests = [blob(store, n) for n in range(6)]
    root = tmp_path / "cache"
    BlobCache(store, root, 2500)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    args = [sys.executable, "-c", SHARED, blob_url, str(root), "2500", *digests]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert outputs == [b"ok\n"] * 4
    assert list(root.glob("??/.*")) == []  # no temp file left behind
    assert BlobCache(store, root, 2500).stats().bytes <= 2500  # the last eviction saw it all


def test_a_path_just_handed_out_is_not_evicted(store: BlobStore, tmp_path: Path) -> None:
    a, b = blob(store, 1), blob(store, 2)
    cache = BlobCache(store, tmp_path / "cache", max_bytes=1000, grace=3600)
    path = cache.path(a)
    cache.path(b)
    assert path.exists()  # overshoots the bound rather than pulling a path from under a reader
    assert cached(cache) == {a, b}


def test_an_open_copy_survives_eviction(store: BlobStore, tmp_path: Path) -> None:
    a, b = blob(store, 1), blob(store, 2)
    cache = BlobCache(store, tmp_path / "cache", max_bytes=1000, grace=0)
    with cache.open(a) as f:
        cache.path(b)
        assert cached(cache) == {b}
        assert f.read() == b"\x01" * 1000


def test_files_are_private(store: BlobStore, tmp_path: Path) -> None:
    cache = BlobCache(store, tmp_path / "cache", max_bytes=10_000)
    path = cache.path(blob(store, 3))
    assert path.stat().st_mode & 0o077 == 0
    assert cache.root.stat().st_mode & 0o077 == 0


def test_sizes() -> None:
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("1.5 GiB") == 3 << 29
    assert parse_size("1048576") == 1 << 20
    for bad in ("", "lots", "5 parsecs", "-1"):
        with pytest.raises(BlobConfigError):
            parse_size(bad)
    with pytest.raises(BlobConfigError):
        BlobCache(None, "/nonexistent", max_bytes=0)  # type: ignore[arg-type]


def test_the_bound_comes_from_the_option_or_the_environment(
    store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CACHE_SIZE_ENV, raising=False)
    assert cache_size() == DEFAULT_CACHE_BYTES == 1 << 30
    monkeypatch.setenv(CACHE_SIZE_ENV, "64MiB")
    assert BlobCache(store, tmp_path / "c").max_bytes == 64 << 20
    assert BlobCache(store, tmp_path / "c", "2KB").max_bytes == 2000
    monkeypatch.setenv(CACHE_SIZE_ENV, "huge")
    with pytest.raises(BlobConfigError, match="not a size"):
        BlobCache(store, tmp_path / "c")
