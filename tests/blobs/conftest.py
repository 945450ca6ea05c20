"""One blob suite, run against every backend (STYLE.md point 3).

The S3 side talks HTTP to moto's standalone server (`S3Server`, a dev dependency, so `.ci/run`
has it), which tests/conftest.py's `s3_server` starts once on a loopback port; each test gets a
bucket of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from madbwpu_r.blobs import BlobStore, open_blobs

BACKENDS = ["file", "s3"]
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's standalone S3-compatible server as a real child process on a loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            if os.environ.get("CI"):
                raise
            pytest.skip("moto[server] is not installed (uv sync installs the dev group)")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120  # it takes seconds to import, more on a busy machine
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                httpx.get(self.url + "/moto-api/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not answer within 120 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def blob_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, aws_env: Callable[[str], None]
) -> str:
    if backend == "file":
        return (tmp_path / "blobs").as_uri()
    server: S3Server = request.getfixturevalue("s3_server")
    aws_env(server.url)
    return f"s3://t{uuid.uuid4().hex[:16]}/env/blobs?create=1&part_size=5"


@pytest.fixture
def make_store(blob_url: str) -> Iterator[Callable[..., BlobStore]]:
    opened: list[BlobStore] = []

    def make(url: str | None = None) -> BlobStore:
        store = open_blobs(url or blob_url)
        store.ping()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., BlobStore]) -> BlobStore:
    return make_store()
