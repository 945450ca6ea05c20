"""2 APIs, 2 edges and autoscaled workers per environment; one API and one edge SIGKILLed under load.

`up --apis 2 --edges 2` on the Redis queue and Redis purge fan-out. While readers hammer
both edges (cached pages, and cold pages that must reach an API) and a writer keeps ingesting,
one API and one edge of staging are SIGKILLed. Then:

- no read failed: the readers act as a load balancer does (a refused connection to the dead
  edge is sent to the other), and a miss whose API died is retried by the edge on the other;
- every accepted ingest succeeded (no job lost): the writer, too, moves to the other API when
  one refuses, keeping its Idempotency-Key, so a retried write is one job;
- `up` restarted both; a purge (a new version) reaches the surviving and the restarted edge;
- the supervisor scaled workers up with the queue and back to the floor once it drained.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from tests.e2e.test_stack import Running
from tests.e2e.test_up_killed import alive, child_pids
from tests.queue.queue_backends import REDIS_URL, require_redis


def pid_listening(parent: int, url: str) -> int:
    """The child of `up` whose command line listens on the URL's port."""
    listen = url.removeprefix("http://")
    for pid in child_pids(parent):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if listen.encode() in argv:
            return pid
    raise AssertionError(f"no process listens on {url}")


def workers(data: Path) -> int:
    try:
        state = orjson.loads((data / "staging" / "supervisor.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return 0
    return state["queues"]["ingest"]["workers"]


class Load:
    """Readers and a writer on their own threads, counting what failed."""

    def __init__(self, stack: Running, edges: list[str], apis: list[str]) -> None:
        self.stack, self.edges, self.apis = stack, edges, apis
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.reads = 0
        self.accepted: list[str] = []  # status URLs of every 202
        self._serial = itertools.count()
        self.threads = [
            threading.Thread(target=self._read, args=(True,)),
            threading.Thread(target=self._read, args=(True,)),
            threading.Thread(target=self._read, args=(False,)),
            threading.Thread(target=self._write),
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _balanced(self, client: httpx.Client, targets: list[str], send) -> httpx.Response | None:
        """Like a load balancer: the next target, and another one when a connection fails."""
        start = next(self._serial)
        for i in range(len(targets) * 3):
            target = targets[(start + i) % len(targets)]
            try:
                return send(client, target)
            except httpx.TransportError:
                time.sleep(0.05)
        return None

    def _read(self, cached: bool) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                n = next(self._serial)
                path = (
                    f"/v1/datasets/hot/rows?_limit=5&id__gte={n % 5}"
                    if cached
                    else f"/v1/datasets/hot/rows?_limit=1&id__gte={n % 50}&id__lt={n + 1000}"
                )
                response = self._balanced(
                    client, self.edges, lambda c, e, path=path: c.get(e + path)
                )
                self.reads += 1
                time.sleep(0.005)  # leave the 2 cores to the product under test
                if response is None or response.status_code != 200:
                    code = None if response is None else response.status_code
                    self.failures.append(f"GET {path}: {code}")

    def _write(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                key = uuid.uuid4().hex
                body = f"id,n\n1,{key}\n".encode()
                headers = {**self.stack.write, "Content-Type": "text/csv", "Idempotency-Key": key}

                def post(
                    c: httpx.Client, api: str, key=key, body=body, headers=headers
                ) -> httpx.Response:
                    return c.post(
                        f"{api}/v1/datasets/w{key[:8]}/ingest", content=body, headers=headers
                    )

                response = self._balanced(client, self.apis, post)
                if response is None or response.status_code != 202:
                    code = None if response is None else (response.status_code, response.text)
                    self.failures.append(f"ingest: {code}")
                else:
                    self.accepted.append(response.json()["job_id"])
                time.sleep(0.02)


@pytest.fixture
def prefix():
    require_redis()
    name = f"e2e-kill-{uuid.uuid4().hex[:8]}"
    yield name
    # `up` gives each environment its own prefix, NAME-<project>-<env>: drop them all.
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{{{name}-*"):
        client.delete(key)
    client.close()


@pytest.mark.timeout(900)
def test_kill_an_api_and_an_edge_under_load(tmp_path, prefix):
    data = tmp_path / "data"
    stack = Running(
        data,
        "--apis", "2", "--edges", "2", "--max-workers", "4",
        "--queue-url", f"{REDIS_URL}?prefix={prefix}", "--redis-url", REDIS_URL,
        start_timeout=180,  # 8 tier processes and their workers on a shared 2-core machine
    )  # fmt: skip
    try:
        tiers = stack.endpoints["staging"]
        apis, edges = tiers["apis"], tiers["edges"]
        assert len(apis) == 2 and len(edges) == 2
        rows = "id,v\n" + "".join(f"{i},{i}\n" for i in range(60))
        first = stack.ingest("staging", "hot", rows.encode())
        assert first["status"] == "succeeded", first
        for edge in edges:  # warm both caches with the pages the cached readers ask for
            for n in range(5):
                stack.http.get(f"{edge}/v1/datasets/hot/rows?_limit=5&id__gte={n}")

        with Load(stack, edges, apis) as load:
            # A burst on top of the steady writer: more than one worker's share of the queue.
            def post(i: int) -> httpx.Response:
                return stack.http.post(
                    f"{apis[i % 2]}/v1/datasets/b{i}/ingest",
                    content=f"id\n{i}\n".encode(),
                    headers={**stack.write, "Content-Type": "text/csv"},
                )

            with ThreadPoolExecutor(8) as pool:
                burst = list(pool.map(post, range(80)))
            assert all(r.status_code == 202 for r in burst)
            load.accepted += [r.json()["job_id"] for r in burst]
            deadline = time.monotonic() + 30
            most = 0
            while most < 2 and time.monotonic() < deadline:
                most = max(most, workers(data))
                time.sleep(0.1)
            assert most >= 2, "the supervisor never scaled up"

            victims = [
                pid_listening(stack.proc.pid, apis[0]),
                pid_listening(stack.proc.pid, edges[0]),
            ]
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            # `up` restarts both on their ports; reads and writes go on meanwhile.
            deadline = time.monotonic() + 60
            while True:
                try:
                    if all(
                        stack.http.get(f"{u}/healthz").status_code == 200
                        for u in (apis[0], edges[0])
                    ):
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the killed API and edge were not restarted"
                time.sleep(0.1)
            assert not any(alive(pid) for pid in victims)
            time.sleep(2)  # some load on the restarted pair too
        assert load.reads > 100
        assert load.failures == [], load.failures[:10]

        # Every accepted job succeeded; none was lost with the killed API.
        deadline = time.monotonic() + 120
        pending = set(load.accepted)
        while pending:
            for job_id in list(pending):
                job = stack.http.get(f"{apis[1]}/v1/jobs/{job_id}").json()
                if job["status"] == "succeeded":
                    pending.discard(job_id)
                else:
                    assert job["status"] != "failed", job
            assert time.monotonic() < deadline, f"{len(pending)} accepted jobs never finished"
            time.sleep(0.2)

        # A new version is purged from the surviving and from the restarted edge.
        for edge in edges:
            assert stack.http.get(f"{edge}/v1/datasets/hot/rows").status_code == 200
            assert stack.http.get(f"{edge}/v1/datasets/hot/rows").headers["x-cache"] == "HIT"
        second = stack.ingest("staging", "hot", b"id,v\n1,new\n")
        assert second["status"] == "succeeded", second
        for edge in edges:
            fresh = stack.http.get(f"{edge}/v1/datasets/hot/rows")
            assert fresh.headers["x-cache"] == "MISS", edge
            assert fresh.json()["version"] == second["version"]

        # Drained: back to the floor after the supervisor's cool-down.
        deadline = time.monotonic() + 120
        while workers(data) != 1:
            assert time.monotonic() < deadline, f"still {workers(data)} workers"
            time.sleep(0.5)
    finally:
        assert stack.stop() == 0
