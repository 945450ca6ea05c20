"""The blob store port: one interface, shared policy here, small private primitives per backend.

Policy that must not drift between backends lives in `BlobStore` once: key validation, the
streaming SHA-256 and size of every put, refusing a put whose bytes do not match the digest
promised (before anything becomes visible), verifying a read against an expected digest, and
content addressing (`content_key`). A backend only moves bytes (`_put`, `_create`, `_open`,
`_stat`, `_delete`, `_list`, `_ping`) and maps its driver's errors in `_errors()`; `_create`
is the store's own create-if-absent (a hard link on files, a conditional write on S3).

Memory stays bounded whatever the blob's size: bytes flow through in chunks of `CHUNK`.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from madbwpu_r.blobs.errors import BlobNotFound, DigestMismatch, InvalidKey

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "CHUNK",
    "STALE_PARTIAL",
    "BlobInfo",
    "BlobReader",
    "BlobStore",
    "Readable",
    "Source",
    "check_digest",
    "check_key",
    "content_key",
]

CHUNK = 1 << 20
STALE_PARTIAL = 24 * 3600.0
MAX_KEY = 512
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=-]{0,127}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._=/-]{0,512}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SPOOL = 8 << 20


class Readable(Protocol):
    """What a backend's `_put` reads from: `read(n)` until it returns b""."""

    def read(self, n: int = -1, /) -> bytes: ...


Source = bytes | bytearray | memoryview | os.PathLike[str] | Readable
"""What `put` accepts: bytes in memory, a local file's path, or a binary stream read to EOF."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """`sha256` is set by `put`/`get_file`, which hash every byte; `stat`/`list` leave it None."""

    key: str
    size: int
    sha256: str | None = None
    modified: float | None = None


def check_key(key: str) -> str:
    """Keys are `/`-separated segments of [A-Za-z0-9._=-], none empty, `.`-led or `..`."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise InvalidKey(f"a blob key is a string of 1..{MAX_KEY} characters, not {key!r}")
    for segment in key.split("/"):
        if not _SEGMENT.match(segment):
            raise InvalidKey(
                f"bad blob key {key!r}: each /-separated part must be 1..128 characters of "
                "A-Z a-z 0-9 . _ = - and must not start with '.'"
            )
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix is a key's beginning (may end inside a segment or with `/`)."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix) or prefix.startswith("/"):
        raise InvalidKey(f"bad blob prefix {prefix!r}")
    if any(part in (".", "..") or part.startswith(".") for part in prefix.split("/")[:-1]):
        raise InvalidKey(f"bad blob prefix {prefix!r}")
    return prefix


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidKey(f"not a SHA-256 hex digest (64 lowercase hex digits): {digest!r}")
    return digest


def content_key(digest: str) -> str:
    """Where an immutable blob lives when its key is its own digest (fanned out for dirs)."""
    check_digest(digest)
    return f"sha256/{digest[:2]}/{digest}"


class HashingReader(io.RawIOBase):
    """Counts and hashes what a backend reads; at EOF refuses bytes that miss `expected`.

    Raising at EOF, inside the backend's own read loop, aborts the write before the blob is
    renamed into place or the upload completed, so a refused put leaves nothing behind.
    """

    def __init__(self, raw: Readable, expected: str | None = None):
        super().__init__()
        self._raw = raw
        self._expected = expected
        self._hash = hashlib.sha256()
        self.size = 0
        self.done = False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if self.done or n == 0:
            return b""
        parts: list[bytes] = []
        eof = False
        if n is None or n < 0:
            while chunk := self._raw.read(CHUNK):
                parts.append(chunk)
            eof = True
        else:
            got = 0
            while got < n:
                chunk = self._raw.read(n - got)
                if not chunk:
                    eof = True
                    break
                parts.append(chunk)
                got += len(chunk)
        data = b"".join(parts)
        self._hash.update(data)
        self.size += len(data)
        if eof:
            self.done = True
            if self._expected is not None and self._hash.hexdigest() != self._expected:
                raise DigestMismatch(
                    f"content has SHA-256 {self._hash.hexdigest()}, "
                    f"expected {self._expected}; refused"
                )
        return data

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class BlobReader(io.RawIOBase):
    """A blob being read: the backend's errors are translated, the digest checked at EOF."""

    def __init__(
        self,
        raw: IO[bytes],
        errors: Callable[[], AbstractContextManager[None]],
        key: str,
        expected: str | None = None,
    ):
        super().__init__()
        self._raw = raw
        self._errors = errors
        self._hash = hashlib.sha256() if expected is not None else None
        self._expected = expected
        self.key = key
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        with self._errors():
            data = self._raw.read() if n is None or n < 0 else self._raw.read(n)
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)
            if (not data or n is None or n < 0) and self._hash.hexdigest() != self._expected:
                raise DigestMismatch(
                    f"blob {self.key!r} has SHA-256 {self._hash.hexdigest()}, "
                    f"expected {self._expected}: corrupt"
                )
        return data

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._raw.close()
        super().close()


@contextlib.contextmanager
def _as_stream(source: Source) -> Iterator[Readable]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, os.PathLike):
        with open(source, "rb") as f:
            yield f
    elif hasattr(source, "read"):
        yield source
    else:
        raise TypeError(
            f"put() takes bytes, a path or a binary stream, not {type(source).__name__}"
        )


class BlobStore(abc.ABC):
    """Named, immutable-once-written byte objects: uploads and version files."""

    #: The store's URL (never carries credentials; those come from the environment).
    url: str = ""

    # ---- public API -------------------------------------------------------------------------

    def put(
        self, key: str, source: Source, *, sha256: str | None = None, create_only: bool = False
    ) -> BlobInfo:
        """Store `source` under `key`, atomically: readers see the old blob or the whole new one.

        With `sha256`, bytes that do not match are refused (`DigestMismatch`) and nothing is
        stored. With `create_only`, a key that exists is refused (`BlobExists`) and left as it
        is, decided by the store itself, so of concurrent writers exactly one creates the blob
        (a check before the put would let two through). Returns what was stored.
        """
        check_key(key)
        expected = None if sha256 is None else check_digest(sha256)
        with _as_stream(source) as raw:
            reader = HashingReader(raw, expected)
            with self._errors():
                (self._create if create_only else self._put)(key, reader)
        if not reader.done:  # pragma: no cover - a backend that stopped reading early
            raise AssertionError(f"{type(self).__name__}._put did not read to the end")
        return BlobInfo(key, reader.size, reader.hexdigest())

    def open(self, key: str, *, sha256: str | None = None) -> BlobReader:
        """Stream a blob; with `sha256`, reading to the end raises `DigestMismatch` if corrupt."""
        check_key(key)
        expected = None if sha256 is None else check_digest(sha256)
        with self._errors():
            raw = self._open(key)
        return BlobReader(raw, self._errors, key, expected)

    def get_file(
        self, key: str, dest: os.PathLike[str] | str, *, sha256: str | None = None
    ) -> BlobInfo:
        """Copy a blob to a local file atomically (temp file + rename); verified with `sha256`."""
        dest = Path(dest)
        expected = None if sha256 is None else check_digest(sha256)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with self.open(key) as blob, open(tmp, "xb") as out:
                os.chmod(tmp, 0o600)
                while chunk := blob.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if expected is not None and digest.hexdigest() != expected:
                raise DigestMismatch(
                    f"blob {key!r} has SHA-256 {digest.hexdigest()}, expected {expected}: corrupt"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return BlobInfo(key, size, digest.hexdigest())

    def read_bytes(self, key: str, *, sha256: str | None = None) -> bytes:
        """The whole blob in memory: for small blobs only."""
        with self.open(key, sha256=sha256) as blob:
            return blob.read()

    def stat(self, key: str) -> BlobInfo:
        """Size and modification time; `BlobNotFound` when there is no such blob."""
        check_key(key)
        with self._errors():
            return self._stat(key)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove a blob; removing one that is not there is not an error (idempotent)."""
        check_key(key)
        with self._errors():
            self._delete(key)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose key starts with `prefix`, in key order."""
        check_prefix(prefix)
        with self._errors():
            items = self._list(prefix)
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    return
                yield item

    def ping(self) -> None:
        """Raise `BlobUnavailable`/`BlobConfigError` unless the store answers and is usable."""
        with self._errors():
            self._ping()

    def sweep(self, older_than: float = STALE_PARTIAL) -> int:
        """Drop what killed writers left (temp files, unfinished multipart uploads).

        Only leftovers older than `older_than` seconds go (a live writer's are younger), or on
        `file://` those of a dead process of this host. Returns how many; for a periodic job.
        """
        with self._errors():
            return self._sweep(time.time() - older_than)

    # ---- content addressing -----------------------------------------------------------------

    def put_content(self, source: Source, *, sha256: str | None = None) -> BlobInfo:
        """Store an immutable blob under `content_key(its digest)`; a no-op when already there.

        A stream without a known digest is spooled (memory, then a temp file) to learn it.
        """
        if sha256 is None:
            if isinstance(source, bytes | bytearray | memoryview):
                sha256 = hashlib.sha256(source).hexdigest()
            elif isinstance(source, os.PathLike):
                with open(source, "rb") as f:
                    sha256 = hashlib.file_digest(f, "sha256").hexdigest()
            else:
                with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool:
                    reader = HashingReader(source)
                    while chunk := reader.read(CHUNK):
                        spool.write(chunk)
                    spool.seek(0)
                    return self.put_content(spool, sha256=reader.hexdigest())
        key = content_key(sha256)
        try:
            found = self.stat(key)
        except BlobNotFound:
            return self.put(key, source, sha256=sha256)
        return BlobInfo(key, found.size, sha256, found.modified)

    def get_content_file(self, sha256: str, dest: os.PathLike[str] | str) -> BlobInfo:
        """Fetch an immutable blob by digest to a local file, verified against that digest."""
        return self.get_file(content_key(sha256), dest, sha256=sha256)

    def close(self) -> None:  # noqa: B027 - backends without resources need nothing
        """Release connections; the store is not used afterwards."""

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # ---- backend primitives -----------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Backends override to map driver exceptions onto madbwpu_r.blobs.errors."""
        yield

    @abc.abstractmethod
    def _put(self, key: str, reader: Readable) -> None:
        """Read `reader` to EOF (b"") and make the bytes visible under `key` only then."""

    @abc.abstractmethod
    def _create(self, key: str, reader: Readable) -> None:
        """As `_put`, but raise `BlobExists` (leaving it unchanged) when `key` is taken, atomically."""

    @abc.abstractmethod
    def _open(self, key: str) -> IO[bytes]:
        """A binary stream of the blob; raise BlobNotFound when absent."""

    @abc.abstractmethod
    def _stat(self, key: str) -> BlobInfo: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        """Blobs whose key starts with `prefix`, sorted by key."""

    @abc.abstractmethod
    def _ping(self) -> None: ...

    @abc.abstractmethod
    def _sweep(self, before: float) -> int:
        """Remove partial writes last touched before `before` (epoch seconds)."""
