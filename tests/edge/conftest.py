"""Real processes on loopback: the test origin (origin_app.py) and `madbwpu-r edge` itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).parent
TOKEN = "edge-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLI = str(Path(sys.executable).with_name("madbwpu-r"))
HTTP = httpx.Client(timeout=10)  # one pool for the helpers: no TLS context per call


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    def __init__(self, args: list[str], url: str, health: str, env: dict[str, str] | None = None):
        self.url = url
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.health = health
        self.logs = ""  # the process's stderr, once stopped

    def wait(self) -> None:
        args, url, health = self.args, self.url, self.health
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"{args} exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if HTTP.get(url + health, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args} did not become healthy")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr and not self.proc.stderr.closed:
            self.logs = self.proc.stderr.read().decode(errors="replace")
            self.proc.stderr.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


class Origin(Proc):
    def __init__(self) -> None:
        port = free_port()
        super().__init__(
            [sys.executable, str(HERE / "origin_app.py"), str(port)],
            f"http://127.0.0.1:{port}",
            "/_control/stats?path=/",
        )
        self.wait()

    def route(self, path: str, **config: Any) -> None:
        HTTP.post(self.url + "/_control/set", json={"path": path, **config}).raise_for_status()

    def stats(self, path: str) -> dict[str, Any]:
        return HTTP.get(self.url + "/_control/stats", params={"path": path}).json()

    def count(self, path: str) -> int:
        return self.stats(path)["count"]


class Edge(Proc):
    def __init__(self, origin: str, *extra: str, name: str = "edge") -> None:
        port = free_port()
        super().__init__(
            [
                CLI,
                "edge",
                "--origin",
                origin,
                "--listen",
                f"127.0.0.1:{port}",
                "--name",
                name,
                *extra,
            ],
            f"http://127.0.0.1:{port}",
            "/healthz",
            env={"MADBWPU_R_PURGE_TOKEN": TOKEN},
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return HTTP.get(self.url + path, **kwargs)

    def stats(self) -> dict[str, Any]:
        response = HTTP.get(self.url + "/_edge/stats", headers=AUTH)
        response.raise_for_status()
        return response.json()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def purge(self, token: str | None = TOKEN, **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return HTTP.post(self.url + "/_edge/purge", json=body, headers=headers)


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    proc = Origin()
    yield proc
    proc.stop()


@pytest.fixture
def make_origin() -> Iterator[Callable[[], Origin]]:
    started: list[Origin] = []

    def make() -> Origin:
        started.append(Origin())
        return started[-1]

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def make_edge() -> Iterator[Callable[..., Edge]]:
    """make_edge(origin, *cli_options, name=..., count=1): started in parallel, then awaited."""
    started: list[Edge] = []

    def make(origin: str, *extra: str, name: str = "edge", count: int = 1) -> Any:
        edges = [
            Edge(origin, *extra, name=name if count == 1 else f"{name}{i}") for i in range(count)
        ]
        started.extend(edges)
        for e in edges:
            e.wait()
        return edges[0] if count == 1 else edges

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def edge(origin: Origin) -> Iterator[Edge]:
    """One edge shared by the tests that need no options of their own (unique paths each)."""
    proc = Edge(origin.url, name="shared")
    proc.wait()
    yield proc
    proc.stop()


@pytest.fixture
def uniq() -> str:
    """A path prefix no other test uses (the session's origin is shared)."""
    return f"/t/{uuid.uuid4().hex[:12]}"


def redis_url_or_skip() -> str:
    url = "redis://127.0.0.1:6379/0"
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=1).ping()
    except Exception:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return url


@pytest.fixture(scope="session", autouse=True)
def _close_helper_client() -> Iterator[None]:
    yield
    HTTP.close()
