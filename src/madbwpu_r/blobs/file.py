"""File backend: `file:///DIR`, one file per blob at `DIR/<key>` (the embedded default).

A put streams into `DIR/.tmp/`, fsyncs, then renames into place and fsyncs the directory, so a
reader sees the old blob or the whole new one and a crash leaves at most a temp file, which
the next open (or `sweep`) removes. A create-only put links the temp file into place instead of
renaming it: `link(2)` fails when the name exists, so of racing creators exactly one wins.
Files are 0600 and directories 0700: blobs are the product's data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from madbwpu_r.blobs.errors import (
    BlobConfigError,
    BlobExists,
    BlobNotFound,
    BlobUnavailable,
    InvalidKey,
)
from madbwpu_r.blobs.port import CHUNK, STALE_PARTIAL, BlobInfo, BlobStore, Readable

__all__ = ["FileBlobStore"]

_TMP = ".tmp"


class FileBlobStore(BlobStore):
    def __init__(self, root: os.PathLike[str] | str):
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self._tmp = self.root / _TMP
        self._host = socket.gethostname().replace(".", "_")
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            _mkdirs(self._tmp, self.root.parent)
            self._sweep(time.time() - STALE_PARTIAL)
        except OSError as exc:
            raise BlobConfigError(f"cannot use blob directory {self.root}: {exc}") from None

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> FileBlobStore:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise BlobConfigError(f"a file blob URL is file:///ABSOLUTE/DIR, not {url!r}")
        if options:
            raise BlobConfigError(f"unknown file blob option(s): {', '.join(sorted(options))}")
        return cls(unquote(parts.path))

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _sweep(self, before: float) -> int:
        removed = 0
        for part in self._tmp.iterdir():
            host, _, rest = part.name.partition(".")
            try:
                dead = host == self._host and not _alive(int(rest.split(".")[0]))
                if not dead and part.stat().st_mtime >= before:
                    continue
            except (ValueError, FileNotFoundError):
                continue
            part.unlink(missing_ok=True)
            removed += 1
        return removed

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise BlobUnavailable(f"blob directory {self.root}: {exc.strerror or exc}") from None

    # ---- primitives ---------------------------------------------------------------------------

    def _put(self, key: str, reader: Readable) -> None:
        self._write(key, reader, create=False)

    def _create(self, key: str, reader: Readable) -> None:
        self._write(key, reader, create=True)

    def _write(self, key: str, reader: Readable, *, create: bool) -> None:
        final = self._path(key)
        tmp = self._tmp / f"{self._host}.{os.getpid()}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            self._rename(tmp, final, key, create)
        finally:
            tmp.unlink(missing_ok=True)

    def _rename(self, tmp: Path, final: Path, key: str, create: bool) -> None:
        """Move the whole temp file into place; `create`: a hard link, which the kernel refuses
        atomically when the name exists (a rename would replace it)."""
        for _ in range(5):  # a concurrent delete may remove an emptied parent: make it again
            try:
                _mkdirs(final.parent, self.root)
                if final.is_dir():
                    raise InvalidKey(f"blob key {key!r} is a prefix of other blobs' keys here")
                if not create:
                    os.replace(tmp, final)
                elif not _link(tmp, final):
                    raise BlobExists(f"blob {key!r} exists in {self.url}: it is written once")
            except FileNotFoundError:
                continue
            except (NotADirectoryError, FileExistsError):
                raise InvalidKey(
                    f"blob key {key!r} runs through another blob (a prefix of it is a blob)"
                ) from None
            _fsync_dir(final.parent)
            return
        raise BlobUnavailable(f"could not rename a blob into {final.parent}")  # pragma: no cover

    def _open(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")  # noqa: SIM115 - the caller's BlobReader closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(f"no blob {key!r} in {self.url}") from None

    def _stat(self, key: str) -> BlobInfo:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise BlobNotFound(f"no blob {key!r} in {self.url}")
        return BlobInfo(key, st.st_size, None, st.st_mtime)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if path.is_dir():
                return
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        parent = path.parent
        while parent != self.root:  # drop emptied directories, so prefixes do not linger
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        found: list[BlobInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            if not (base.startswith(prefix) or prefix.startswith(base)):
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if _overlaps(base + d + "/", prefix)]
            for name in filenames:
                key = base + name
                if name.startswith(".") or not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                found.append(BlobInfo(key, st.st_size, None, st.st_mtime))
        found.sort(key=lambda info: info.key.encode())
        yield from found

    def _ping(self) -> None:
        probe = self._tmp / f"{self._host}.{os.getpid()}.{uuid.uuid4().hex}.ping"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link(src: Path, dst: Path) -> bool:
    """Link `src` as `dst` unless `dst` exists (False then); never replaces anything."""
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    return True


def _overlaps(directory: str, prefix: str) -> bool:
    return directory.startswith(prefix) or prefix.startswith(directory)


def _mkdirs(path: Path, stop: Path) -> None:
    """Create `path` and missing parents below `stop`, each 0700 whatever the umask."""
    missing: list[Path] = []
    while not path.is_dir() and path != stop and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue
        os.chmod(directory, 0o700)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - some filesystems refuse fsync on directories
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
