"""Puts from chunk iterators and from async bodies (an ingest's request stream), every backend."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
import pytest

from madbwpu_r.blobs import BlobStore, DigestMismatch, IterSource, put_async

MiB = 1 << 20


def test_iter_source_reads_any_sizes() -> None:
    source = IterSource([b"ab", b"", b"cdefg", b"h"])
    assert source.read(3) == b"abc"
    assert source.read(1) == b"d"
    assert source.read() == b"efgh"
    assert source.read(5) == b""


def test_put_from_an_iterator(store: BlobStore) -> None:
    chunks = [bytes([i]) * 70_001 for i in range(40)]  # 2.7 MB in odd-sized chunks
    info = store.put("k", IterSource(chunks))
    assert info.size == 40 * 70_001
    assert store.read_bytes("k", sha256=hashlib.sha256(b"".join(chunks)).hexdigest())


async def body(total: int, chunk: int = 65_536) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        await anyio.sleep(0)
        piece = bytes([sent % 251]) * min(chunk, total - sent)
        sent += len(piece)
        yield piece


class TooLarge(Exception):
    pass


async def limited(source: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in source:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"over {limit} bytes")
        yield chunk


def test_put_async_streams_a_body(store: BlobStore) -> None:
    async def main() -> None:
        info = await put_async(store, "uploads/a.csv", body(6 * MiB + 3))
        assert info.size == 6 * MiB + 3
        expected = b"".join([c async for c in body(6 * MiB + 3)])
        assert info.sha256 == hashlib.sha256(expected).hexdigest()
        assert store.read_bytes("uploads/a.csv") == expected

    anyio.run(main)


def test_a_failing_body_stores_nothing(store: BlobStore) -> None:
    async def main() -> None:
        with pytest.raises(TooLarge):
            await put_async(store, "uploads/big.csv", limited(body(7 * MiB), 6 * MiB))
        with pytest.raises(DigestMismatch):
            await put_async(store, "uploads/bad.csv", body(100), sha256="0" * 64)

    anyio.run(main)
    assert list(store.list()) == []
