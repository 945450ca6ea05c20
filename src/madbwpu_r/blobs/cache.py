"""A local, byte-bounded LRU cache of immutable blobs, keyed by their SHA-256.

Version files are immutable, so a cached copy never goes stale; what can go wrong is a copy
that is damaged on disk. Every copy is verified against its digest when fetched and again
the first time a process uses it, or whenever its size or mtime change, and a bad copy is
dropped and fetched again. Several processes may share one directory: each fetch lands in
a temp file renamed into place, a per-digest-stripe `flock` makes them fetch a blob once,
and recency is the file's atime (set explicitly, so `noatime` mounts do not matter).

A file another process evicts stays readable for whoever already opened it (POSIX unlink);
`open()` hands its caller an open file (a fetch opens it before renaming it into place). A path handed out by `path()` is not evicted for
`grace` seconds after its last use (the bound may be overshot meanwhile), so the caller can
open it: call `path()` again right before each open rather than keeping the path around.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from madbwpu_r.blobs.errors import BlobConfigError
from madbwpu_r.blobs.port import BlobStore, check_digest, content_key

__all__ = [
    "CACHE_SIZE_ENV",
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_GRACE",
    "BlobCache",
    "CacheStats",
    "cache_size",
    "parse_size",
]

DEFAULT_CACHE_BYTES = 1 << 30
DEFAULT_GRACE = 10.0
CACHE_SIZE_ENV = "MADBWPU_R_BLOB_CACHE_SIZE"
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2}
_UNITS |= {"mib": 1 << 20, "g": 1000**3, "gb": 1000**3, "gib": 1 << 30, "t": 1000**4}
_UNITS |= {"tb": 1000**4, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_STALE_PART = 3600.0

log = logging.getLogger(__name__)


def parse_size(text: str | int) -> int:
    """`"512MiB"`, `"2GB"`, `"1048576"` -> bytes (for the cache-size option)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise BlobConfigError(f"not a size: {text!r} (use e.g. 512MiB, 2GB or a byte count)")
    return int(float(match.group(1)) * _UNITS[unit])


def cache_size(text: str | int | None = None) -> int:
    """The cache bound: `text` if given, else $MADBWPU_R_BLOB_CACHE_SIZE, else 1 GiB."""
    if text is None:
        text = os.environ.get(CACHE_SIZE_ENV) or DEFAULT_CACHE_BYTES
    size = parse_size(text)
    if size <= 0:
        raise BlobConfigError("the blob cache's size must be > 0 bytes")
    return size


@dataclass(frozen=True, slots=True)
class CacheStats:
    files: int
    bytes: int
    max_bytes: int


class BlobCache:
    """`path(digest)` -> a local, verified copy of the immutable blob with that SHA-256."""

    def __init__(
        self,
        store: BlobStore,
        root: os.PathLike[str] | str,
        max_bytes: int | str | None = None,
        *,
        grace: float = DEFAULT_GRACE,
    ):
        self.max_bytes = cache_size(max_bytes)
        self.store = store
        self.root = Path(root)
        self.grace = grace
        self._locks = self.root / ".locks"
        self._verified: dict[str, tuple[int, int, int]] = {}
        self._mutex = threading.Lock()
        self._last_touch = 0
        try:
            self._locks.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
        except OSError as exc:
            raise BlobConfigError(f"cannot use blob cache directory {self.root}: {exc}") from None

    def open(self, digest: str, key: str | None = None) -> BinaryIO:
        """The verified copy, opened, fetched (from `key`, default `content_key(digest)`) on a miss.

        Once open, no eviction can take it from the caller. Raises what the store raises
        (`BlobNotFound`, `BlobUnavailable`) and `DigestMismatch` when the store's copy itself
        is corrupt (nothing is cached then).
        """
        check_digest(digest)
        local = self._local(digest)
        f = self._open_verified(digest, local)
        if f is None:
            with self._lock(digest):  # another process may have fetched it meanwhile
                f = self._open_verified(digest, local) or self._fetch(digest, local, key)
            self.evict(keep=digest)
        return f

    def path(self, digest: str, key: str | None = None) -> Path:
        """The verified copy's path (kept `grace` seconds at least; see the module's note)."""
        with self.open(digest, key):
            return self._local(digest)

    def forget(self, digest: str) -> None:
        """Drop the local copy, so the next `open` fetches (and verifies) the store's object."""
        check_digest(digest)
        with self._lock(digest):
            self._local(digest).unlink(missing_ok=True)
            self._verified.pop(digest, None)

    def evict(self, keep: str | None = None) -> int:
        """Remove least recently used copies until the cache fits; returns the bytes freed."""
        entries = list(self._entries())
        total = sum(size for _, size, _ in entries)
        freed = 0
        recent = time.time_ns() - int(self.grace * 1e9)
        for path, size, used in sorted(entries, key=lambda e: (e[2], e[0].name)):
            if total - freed <= self.max_bytes:
                break
            if path.name == keep or used > recent:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                freed += size
            self._verified.pop(path.name, None)
        return freed

    def stats(self) -> CacheStats:
        entries = list(self._entries())
        return CacheStats(len(entries), sum(size for _, size, _ in entries), self.max_bytes)

    # ---- internals ----------------------------------------------------------------------------

    def _local(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def _open_verified(self, digest: str, local: Path) -> BinaryIO | None:
        """The copy, opened, if it exists and is known good (verifying it first if need be)."""
        try:
            f = open(local, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except FileNotFoundError:
            return None
        st = os.fstat(f.fileno())
        if self._verified.get(digest) != (st.st_ino, st.st_size, st.st_mtime_ns):
            actual = hashlib.file_digest(f, "sha256").hexdigest()
            f.seek(0)
            if actual != digest:
                f.close()
                log.warning(
                    "blob cache: %s is corrupt (sha256 %s); fetching it again", local, actual
                )
                local.unlink(missing_ok=True)
                self._verified.pop(digest, None)
                return None
            self._verified[digest] = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._touch(local, st.st_mtime_ns)
        return f

    def _fetch(self, digest: str, local: Path, key: str | None) -> BinaryIO:
        """Download next to its place, open it, then rename it in: the caller holds it."""
        local.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = local.with_name(f".{digest}.{os.getpid()}.{uuid.uuid4().hex[:8]}.fetch")
        try:
            self.store.get_file(key or content_key(digest), tmp, sha256=digest)
            f = open(tmp, "rb")  # noqa: SIM115 - returned to the caller, who closes it
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
        st = os.fstat(f.fileno())
        self._verified[digest] = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._touch(local, st.st_mtime_ns)
        return f

    def _touch(self, local: Path, mtime_ns: int) -> None:
        """Mark as just used: atime only, so the mtime that guards integrity stays put."""
        with self._mutex:
            now = self._last_touch = max(time.time_ns(), self._last_touch + 1)
        with contextlib.suppress(FileNotFoundError):
            os.utime(local, ns=(now, mtime_ns))

    def _entries(self) -> Iterator[tuple[Path, int, int]]:
        now = time.time()
        for shard in self.root.iterdir():
            if shard.name.startswith(".") or not shard.is_dir():
                continue
            for path in shard.iterdir():
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                if path.name.startswith("."):  # a fetch in progress, or one killed midway
                    if now - st.st_mtime > _STALE_PART:
                        path.unlink(missing_ok=True)
                    continue
                yield path, st.st_size, st.st_atime_ns

    @contextlib.contextmanager
    def _lock(self, digest: str) -> Iterator[None]:
        """One fetch per digest across processes (256 lock stripes, never deleted)."""
        fd = os.open(self._locks / digest[:2], os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
