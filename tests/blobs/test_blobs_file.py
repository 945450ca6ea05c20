"""File backend specifics: a SIGKILLed writer, permissions, the directory layout, its URLs."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from madbwpu_r.blobs import BlobConfigError, BlobUnavailable, InvalidKey, open_blobs
from madbwpu_r.blobs.file import FileBlobStore

WRITER = Path(__file__).with_name("blob_writer.py")
MiB = 1 << 20


def start_writer(url: str, key: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), url, key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def wait_for_partial(tmp_dir: Path, at_least: int) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for part in tmp_dir.iterdir():
            if part.stat().st_size >= at_least:
                return part
        time.sleep(0.02)
    raise AssertionError("the writer never wrote its temp file")


@pytest.mark.parametrize("existing", [None, b"the previous version"])
def test_sigkilled_writer_leaves_no_partial_blob(tmp_path: Path, existing: bytes | None) -> None:
    root = tmp_path / "blobs"
    store = FileBlobStore(root)
    if existing is not None:
        store.put("uploads/u1", existing)
    with start_writer(store.url, "uploads/u1") as writer:
        assert writer.stdin is not None
        writer.stdin.write(os.urandom(3 * MiB))  # more is still to come: the put is mid-stream
        writer.stdin.flush()
        part = wait_for_partial(root / ".tmp", 2 * MiB)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        with contextlib.suppress(BrokenPipeError):
            writer.stdin.close()
    assert writer.returncode == -signal.SIGKILL
    assert part.exists()  # the killed writer's bytes are there, but only as a temp file
    if existing is None:
        assert not store.exists("uploads/u1")
        assert list(store.list()) == []
    else:
        assert store.read_bytes("uploads/u1") == existing
        assert [i.key for i in store.list()] == ["uploads/u1"]
    FileBlobStore(root)  # the next open sweeps the dead writer's temp file
    assert not part.exists()


def test_a_writer_that_finishes_publishes(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    data = os.urandom(MiB + 5)
    with start_writer(store.url, "uploads/u2") as writer:
        out, _ = writer.communicate(data, timeout=60)
    assert writer.returncode == 0
    assert store.read_bytes("uploads/u2", sha256=out.decode().strip()) == data


def test_live_writers_temp_files_are_not_swept(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    with start_writer(store.url, "k") as writer:
        assert writer.stdin is not None
        writer.stdin.write(b"x" * MiB)
        writer.stdin.flush()
        part = wait_for_partial(store.root / ".tmp", MiB)
        FileBlobStore(store.root)
        assert part.exists()
        writer.stdin.close()
        writer.wait(60)
    assert store.stat("k").size == MiB


def test_files_are_private(tmp_path: Path) -> None:
    os.umask(0o022)
    store = FileBlobStore(tmp_path / "blobs")
    store.put("a/b/c", b"secret data")
    for path in (store.root, store.root / "a", store.root / "a" / "b", store.root / ".tmp"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE((store.root / "a" / "b" / "c").stat().st_mode) == 0o600


def test_layout_is_one_file_per_key(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("uploads/x.csv", b"a,b\n")
    assert (tmp_path / "blobs" / "uploads" / "x.csv").read_bytes() == b"a,b\n"
    store.delete("uploads/x.csv")
    assert not (tmp_path / "blobs" / "uploads").exists()  # emptied directories go too


def test_keys_cannot_escape_the_directory(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "outside").write_bytes(b"not yours")
    for key in ("../outside", "a/../../outside", "/etc/passwd"):
        with pytest.raises(InvalidKey):
            store.read_bytes(key)
        with pytest.raises(InvalidKey):
            store.put(key, b"x")
    assert (tmp_path / "outside").read_bytes() == b"not yours"


def test_a_key_through_another_blob_is_refused(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("a", b"1")
    with pytest.raises(InvalidKey):
        store.put("a/b", b"2")
    store.put("d/e", b"3")
    with pytest.raises(InvalidKey):
        store.put("d", b"4")
    assert store.read_bytes("a") == b"1" and store.read_bytes("d/e") == b"3"


def test_unusable_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(BlobConfigError):
        FileBlobStore(tmp_path / "file" / "blobs")
    store = FileBlobStore(tmp_path / "blobs")
    (store.root / ".tmp").rmdir()
    with pytest.raises(BlobUnavailable):
        store.ping()
    with pytest.raises(BlobUnavailable):
        store.put("k", b"x")


def test_file_urls(tmp_path: Path) -> None:
    spaced = tmp_path / "with space"
    store = open_blobs(spaced.as_uri())
    assert isinstance(store, FileBlobStore) and store.root == spaced
    assert open_blobs(f"file://localhost{tmp_path}/b").root == tmp_path / "b"  # type: ignore[attr-defined]
    for url in ("file://host/dir", "file:relative", f"file://{tmp_path}?x=1", "ftp://x/y"):
        with pytest.raises(BlobConfigError):
            open_blobs(url)
