"""What every blob backend must do, run on the file backend and on a real S3-compatible server."""

from __future__ import annotations

import hashlib
import io
import threading
import tracemalloc
from pathlib import Path

import pytest

from madbwpu_r.blobs import (
    BlobExists,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    DigestMismatch,
    InvalidKey,
    content_key,
)

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Trickle(io.RawIOBase):
    """A non-seekable stream handing out odd-sized pieces, like a request body."""

    def __init__(self, data: bytes, piece: int = 65_537):
        self._data = memoryview(data)
        self._pos = 0
        self._piece = piece

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        n = self._piece if n is None or n < 0 else min(n, self._piece)
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


def pattern(size: int) -> bytes:
    """Deterministic bytes that differ from block to block (a swapped part would show)."""
    block = hashlib.sha256(str(size).encode()).digest() * 2048
    out = bytearray()
    i = 0
    while len(out) < size:
        out += i.to_bytes(8, "big") + block
        i += 1
    return bytes(out[:size])


@pytest.mark.parametrize("size", [0, 1, 1000, 12 * MiB + 123], ids=["empty", "1B", "1KB", "12MiB"])
def test_round_trip(store: BlobStore, size: int, tmp_path: Path) -> None:
    data = pattern(size)
    info = store.put("uploads/x.csv", Trickle(data))
    assert (info.key, info.size, info.sha256) == ("uploads/x.csv", size, sha(data))
    assert store.stat("uploads/x.csv").size == size
    with store.open("uploads/x.csv", sha256=sha(data)) as blob:
        assert blob.read() == data
    got = store.get_file("uploads/x.csv", tmp_path / "copy", sha256=sha(data))
    assert (got.size, got.sha256) == (size, sha(data))
    assert (tmp_path / "copy").read_bytes() == data


def peak_while(call) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_blob(store: BlobStore, tmp_path: Path) -> None:
    # S3 reaches its steady state (every part buffer in use) within 30 MiB of 5 MiB parts.
    small, large = pattern(30 * MiB), pattern(60 * MiB)
    put_small = peak_while(lambda: store.put("s", Trickle(small)))
    put_large = peak_while(lambda: store.put("l", Trickle(large)))
    get_large = peak_while(lambda: store.get_file("l", tmp_path / "l"))
    assert put_large < put_small + 4 * MiB, (put_small, put_large)
    assert put_large < len(large) // 2  # far from holding the whole blob
    assert get_large < 8 * MiB
    assert (tmp_path / "l").stat().st_size == len(large)


def test_put_from_bytes_and_from_a_path(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "v.sqlite"
    source.write_bytes(b"version file")
    assert store.put("a", b"in memory").size == 9
    assert store.put("b", source).sha256 == sha(b"version file")
    assert store.read_bytes("a") == b"in memory"
    assert store.read_bytes("b") == b"version file"


def test_streamed_reads_in_pieces(store: BlobStore) -> None:
    data = pattern(3 * MiB)
    store.put("big", data)
    with store.open("big") as blob:
        pieces = []
        while piece := blob.read(100_000):
            assert len(piece) <= 100_000
            pieces.append(piece)
    assert b"".join(pieces) == data


def test_overwrite_replaces_whole(store: BlobStore) -> None:
    store.put("k", b"old contents")
    store.put("k", b"new")
    assert store.read_bytes("k") == b"new"
    assert store.stat("k").size == 3


@pytest.mark.parametrize(
    "size", [0, 10, 5 * MiB, 11 * MiB], ids=["empty", "single", "1part", "3parts"]
)
def test_create_only_writes_once(store: BlobStore, size: int) -> None:
    data, other = pattern(size), pattern(size + 1)
    info = store.put("once/k", Trickle(data), sha256=sha(data), create_only=True)
    assert (info.size, info.sha256) == (size, sha(data))
    with pytest.raises(BlobExists):
        store.put("once/k", Trickle(other), create_only=True)
    with pytest.raises(BlobExists):
        store.put("once/k", Trickle(data), sha256=sha(data), create_only=True)  # same bytes too
    assert store.read_bytes("once/k", sha256=sha(data)) == data
    with pytest.raises(DigestMismatch):  # a refused create leaves nothing, whatever its size
        store.put("once/bad", Trickle(data), sha256=sha(other), create_only=True)
    assert [i.key for i in store.list("once/")] == ["once/k"]
    store.delete("once/k")  # deleting frees the key; a plain put still replaces
    store.put("once/k", other, create_only=True)
    store.put("once/k", b"replaced")
    assert store.read_bytes("once/k") == b"replaced"


def test_racing_creators_exactly_one_wins(make_store) -> None:  # type: ignore[no-untyped-def]
    """Writers on handles of their own create one key at once: the store, not a check before
    the put, decides; the blob is the winner's bytes, whole."""
    writers = 6
    stores = [make_store() for _ in range(writers)]
    start = threading.Barrier(writers)
    won: list[int] = []
    refused: list[int] = []

    def create(n: int) -> None:
        start.wait()
        try:
            stores[n].put("race/k", pattern(1000 + n), create_only=True)
            won.append(n)
        except BlobExists:
            refused.append(n)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == writers - 1, (won, refused)
    assert stores[0].read_bytes("race/k") == pattern(1000 + won[0])
    assert [i.key for i in stores[0].list()] == ["race/k"]


@pytest.mark.parametrize(
    "size", [10, 5 * MiB, 10 * MiB, 11 * MiB], ids=["single", "1part", "2parts", "3parts"]
)
def test_expected_digest_accepted_and_mismatch_refused(store: BlobStore, size: int) -> None:
    data = pattern(size)
    assert store.put("ok", Trickle(data), sha256=sha(data)).sha256 == sha(data)
    store.put("kept", b"previous")
    with pytest.raises(DigestMismatch):
        store.put("bad", Trickle(data), sha256=sha(b"something else"))
    with pytest.raises(DigestMismatch):
        store.put("kept", Trickle(data), sha256=sha(b"something else"))
    assert not store.exists("bad")
    assert store.read_bytes("kept") == b"previous"
    assert [i.key for i in store.list()] == ["kept", "ok"]


def test_corrupt_read_is_detected(store: BlobStore, tmp_path: Path) -> None:
    store.put("k", b"what is stored")
    wrong = sha(b"what was promised")
    with pytest.raises(DigestMismatch), store.open("k", sha256=wrong) as blob:
        blob.read()
    with pytest.raises(DigestMismatch):
        store.read_bytes("k", sha256=wrong)
    out = tmp_path / "downloads"
    out.mkdir()
    with pytest.raises(DigestMismatch):
        store.get_file("k", out / "k", sha256=wrong)
    assert list(out.iterdir()) == []  # no file, not even a temp one


def test_listing_by_prefix(store: BlobStore) -> None:
    for key in ["a/2", "a/1", "ab", "b/c/d", "a/sub/x"]:
        store.put(key, key.encode())
    keys = lambda prefix: [i.key for i in store.list(prefix)]  # noqa: E731
    assert keys("") == ["a/1", "a/2", "a/sub/x", "ab", "b/c/d"]
    assert keys("a/") == ["a/1", "a/2", "a/sub/x"]
    assert keys("a") == ["a/1", "a/2", "a/sub/x", "ab"]
    assert keys("b/c") == ["b/c/d"]
    assert keys("a/s") == ["a/sub/x"]
    assert keys("zz") == []
    assert {i.key: i.size for i in store.list("a/")} == {"a/1": 3, "a/2": 3, "a/sub/x": 7}


def test_delete(store: BlobStore) -> None:
    store.put("d/x", b"1")
    store.put("d/y", b"2")
    store.delete("d/x")
    assert not store.exists("d/x")
    assert store.exists("d/y")
    with pytest.raises(BlobNotFound):
        store.stat("d/x")
    store.delete("d/x")  # idempotent
    store.delete("never/was")
    store.delete("d/y")
    assert list(store.list()) == []
    store.put("d/x", b"again")  # the emptied prefix can be used again
    assert store.read_bytes("d/x") == b"again"


def test_unknown_key(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound):
        store.open("nope")
    with pytest.raises(BlobNotFound):
        store.stat("nope/deeper")
    with pytest.raises(BlobNotFound):
        store.read_bytes("nope")
    with pytest.raises(BlobNotFound):
        store.get_file("nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not store.exists("nope")
    store.put("dir/file", b"x")
    with pytest.raises(BlobNotFound):
        store.open("dir")  # a prefix is not a blob
    assert isinstance(BlobNotFound("x"), LookupError)


BAD_KEYS = [
    "",
    "/abs",
    "trailing/",
    "a//b",
    "..",
    "../escape",
    "a/../../b",
    ".hidden",
    "a/.b",
    "a b",
    "a\\b",
    "caf\u00e9",
    "nul\x00",
    "x" * 129,
    "a/" * 300 + "a",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_refused(store: BlobStore, key: str, tmp_path: Path) -> None:
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.put(key, b"x", create_only=True),
        lambda: store.open(key),
        lambda: store.stat(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
        lambda: store.get_file(key, tmp_path / "out"),
    ):
        with pytest.raises(InvalidKey):
            call()
    assert list(store.list()) == []


@pytest.mark.parametrize("prefix", ["/x", "../", "a/../", ".tmp/", "a b"])
def test_bad_prefixes_refused(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        list(store.list(prefix))


def test_not_bytes_refused(store: BlobStore) -> None:
    with pytest.raises(TypeError):
        store.put("k", "a str is ambiguous")  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        store.put("k", b"x", sha256="not-a-digest")


def test_content_addressed(store: BlobStore, tmp_path: Path) -> None:
    data = pattern(2 * MiB + 7)
    info = store.put_content(Trickle(data))
    assert info.key == content_key(sha(data)) == f"sha256/{sha(data)[:2]}/{sha(data)}"
    assert store.put_content(data).key == info.key  # the same bytes: already there
    source = tmp_path / "src"
    source.write_bytes(data)
    assert store.put_content(source).sha256 == sha(data)
    assert [i.key for i in store.list("sha256/")] == [info.key]
    got = store.get_content_file(sha(data), tmp_path / "fetched")
    assert got.sha256 == sha(data) and (tmp_path / "fetched").read_bytes() == data
    with pytest.raises(DigestMismatch):
        store.put_content(b"other bytes", sha256=sha(data + b"!"))


def test_corrupt_content_blob_detected(store: BlobStore, tmp_path: Path) -> None:
    digest = sha(b"the real bytes")
    store.put(content_key(digest), b"tampered bytes")  # what a damaged object store returns
    with pytest.raises(DigestMismatch):
        store.get_content_file(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_errors_are_the_packages_own(store: BlobStore) -> None:
    assert issubclass(BlobNotFound, BlobStoreError)
    assert issubclass(BlobExists, BlobStoreError)
    assert issubclass(DigestMismatch, BlobStoreError)
    assert issubclass(InvalidKey, BlobStoreError)


def test_two_handles_see_each_others_writes(make_store) -> None:  # type: ignore[no-untyped-def]
    one, two = make_store(), make_store()
    one.put("shared/k", b"hello")
    assert two.read_bytes("shared/k") == b"hello"
    two.delete("shared/k")
    assert not one.exists("shared/k")


def test_reader_closes(store: BlobStore) -> None:
    store.put("k", b"abc")
    blob = store.open("k")
    assert blob.read(1) == b"a"
    blob.close()
    assert blob.closed
