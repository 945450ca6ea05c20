"""Sources a put can read from besides files: an iterator of chunks, an async request body.

An ingest's body arrives as an async iterator (Starlette's `request.stream()`); `put_async`
runs the put in a worker thread that pulls each chunk from the event loop as it needs it, so
the body goes to the store without a local copy and with bounded memory. An exception raised
by the body (a client that disconnects, a size limit exceeded) aborts the put: nothing is
stored and the exception reaches the caller unchanged.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterable, Iterable, Iterator

import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from madbwpu_r.blobs.port import BlobInfo, BlobStore

__all__ = ["IterSource", "put_async"]


class IterSource(io.RawIOBase):
    """A readable binary stream over an iterable of byte chunks of any size."""

    def __init__(self, chunks: Iterable[bytes]):
        super().__init__()
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        while not self._eof and (n is None or n < 0 or len(self._buffer) < n):
            chunk = next(self._chunks, None)
            if chunk is None:
                self._eof = True
            else:
                self._buffer += chunk
        if n is None or n < 0:
            n = len(self._buffer)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


async def put_async(
    store: BlobStore, key: str, body: AsyncIterable[bytes], *, sha256: str | None = None
) -> BlobInfo:
    """`store.put(key, body)` for an async body, from a worker thread (call it in async code)."""
    iterator = body.__aiter__()
    token = anyio.lowlevel.current_token()  # the backend may read from a thread of its own

    async def next_chunk() -> bytes:
        return await iterator.__anext__()

    def pull() -> Iterator[bytes]:
        while True:
            try:
                yield anyio.from_thread.run(next_chunk, token=token)
            except StopAsyncIteration:
                return

    def put() -> BlobInfo:
        return store.put(key, IterSource(pull()), sha256=sha256)

    return await anyio.to_thread.run_sync(put)
