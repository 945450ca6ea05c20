"""2 APIs, 2 edges and autoscaled workers per environment; one API and one edge SIGKILLed under load.

`up --apis 2 --edges 2` on the scale-out engines: metadata on PostgreSQL (a schema per
environment of this run), jobs on Redis Streams, uploads and version files on S3 (moto's
server, a bucket of this run), purges over Redis pub/sub. While readers hammer both edges
(cached pages, and cold pages that must reach an API) and a writer keeps ingesting, one API
and one edge of staging are SIGKILLed. Then:

- no read failed, and the cached pages were served from the caches: the readers act as a
  load balancer does (a refused connection to the dead edge is sent to the other), and a miss
  whose API died is retried by the edge on the other;
- every accepted ingest succeeded (no job lost): the writer, too, moves to the other API when
  one refuses, keeping its Idempotency-Key, so a retried write is one job;
- `up` restarted both (new processes on the same ports); a purge (a new version) reaches the
  surviving and the restarted edge;
- staging's supervisor scaled workers up with the queue and back to the floor once it drained,
  read from its decisions (status file and log), not from timing.
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
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.test_stack import Running, scaled_out_engines
from tests.e2e.test_up_killed import alive, child_pids


def pid_listening(parent: int, url: str) -> int:
    """The child of `up` whose command line listens on the URL's port."""
    listen = url.removeprefix("http://")
    for pid in child_pids(parent):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if listen.encode() in argv and alive(pid):
            return pid
    raise AssertionError(f"no process listens on {url}")


def supervised(data: Path, env: str = "staging") -> dict[str, Any]:
    """The ingest queue's entry in the environment's supervisor status file."""
    try:
        state = orjson.loads((data / env / "supervisor.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return state["queues"]["ingest"]


def scalings(log: Path) -> list[tuple[int, int]]:
    """Every (from, to) of the supervisors' "scaled workers" log lines, in order."""
    found = []
    for line in log.read_bytes().splitlines():
        if b'"scaled workers"' not in line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        found.append((entry["from"], entry["to"]))
    return found


class Load:
    """Readers and a writer on their own threads, counting what failed."""

    def __init__(self, stack: Running, edges: list[str], apis: list[str]) -> None:
        self.stack, self.edges, self.apis = stack, edges, apis
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.reads = {True: 0, False: 0}  # cached, cold
        self.hits = 0  # cached pages the edges answered from their caches
        self.accepted: list[str] = []  # job ids of every 202
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
                self.reads[cached] += 1
                time.sleep(0.02)  # leave the 2 cores to the product under test
                if response is None or response.status_code != 200:
                    code = None if response is None else response.status_code
                    self.failures.append(f"GET {path}: {code}")
                elif cached and response.headers.get("x-cache") == "HIT":
                    self.hits += 1

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
                time.sleep(0.1)


@pytest.mark.timeout(900)
def test_kill_an_api_and_an_edge_under_load(tmp_path):
    data = tmp_path / "data"
    with scaled_out_engines(data) as (engines, aws):
        stack = Running(
            data,
            "--apis", "2", "--edges", "2", "--max-workers", "4", *engines,
            "--worker-cooldown", "5",  # scale down soon after the drain: a shorter test
            env=aws,
            start_timeout=180,  # 8 tier processes and their workers on a shared 2-core machine
        )  # fmt: skip
        try:
            run(stack, data)
        finally:
            assert stack.stop() == 0


def run(stack: Running, data: Path) -> None:
    tiers = stack.endpoints["staging"]
    apis, edges = tiers["apis"], tiers["edges"]
    assert len(apis) == 2 and len(edges) == 2
    assert stack.endpoints["production"].keys() >= {"apis", "edges"}  # per environment
    rows = "id,v\n" + "".join(f"{i},{i}\n" for i in range(60))
    first = stack.ingest("staging", "hot", rows.encode())
    assert first["status"] == "succeeded", first
    for edge in edges:  # warm both caches with the pages the cached readers ask for
        for n in range(5):
            stack.http.get(f"{edge}/v1/datasets/hot/rows?_limit=5&id__gte={n}")
    assert supervised(data)["workers"] == 1  # idle: the floor

    with Load(stack, edges, apis) as load:
        # A burst on top of the steady writer: more than one worker's share (20 jobs) of the queue.
        def post(i: int) -> httpx.Response:
            return stack.http.post(
                f"{apis[i % 2]}/v1/datasets/b{i}/ingest",
                content=f"id\n{i}\n".encode(),
                headers={**stack.write, "Content-Type": "text/csv"},
            )

        with ThreadPoolExecutor(8) as pool:
            burst = list(pool.map(post, range(50)))
        assert all(r.status_code == 202 for r in burst), [r.text for r in burst][:3]
        load.accepted += [r.json()["job_id"] for r in burst]
        # The supervisor's decision on that backlog stays in its status file until the next.
        deadline = time.monotonic() + 30
        while (supervised(data).get("last_decision") or {}).get("to", 0) < 2:
            assert time.monotonic() < deadline, f"never scaled up: {supervised(data)}"
            time.sleep(0.1)
        up = supervised(data)["last_decision"]
        assert up["reason"] == "depth" and up["from"] < up["to"], up
        # ... on the queue's figure: a backlog past 20 jobs a worker (or a job waiting > 30 s).
        backlog = up["depth"]["ready"] + up["depth"]["in_flight"]
        assert backlog > 20 * (up["to"] - 1) or up["depth"]["oldest_ready_age"] > 30, up

        victims = [
            pid_listening(stack.proc.pid, apis[0]),
            pid_listening(stack.proc.pid, edges[0]),
        ]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        # `up` restarts both on their ports; reads and writes go on meanwhile. (A bound, not a
        # figure: a process takes a minute to start on a 2-core machine with a load of 14.)
        deadline = time.monotonic() + 150
        while True:
            try:
                if all(
                    stack.http.get(f"{u}/healthz").status_code == 200 for u in (apis[0], edges[0])
                ):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the killed API and edge were not restarted"
            time.sleep(0.1)
        assert not any(alive(pid) for pid in victims)
        restarted = [
            pid_listening(stack.proc.pid, apis[0]),
            pid_listening(stack.proc.pid, edges[0]),
        ]
        assert not set(restarted) & set(victims), (victims, restarted)
        # Some load on the restarted pair too: a few more accepted ingests at least.
        settled = len(load.accepted) + 5
        deadline = time.monotonic() + 60
        while len(load.accepted) < settled:
            assert time.monotonic() < deadline, "the writer stalled after the kill"
            time.sleep(0.1)
    assert load.reads[True] > 100 and load.reads[False] > 20, load.reads
    assert load.failures == [], load.failures[:10]
    assert load.hits > load.reads[True] // 2, (load.hits, load.reads)

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

    # Drained: the supervisor decides to go back to the floor (after its cool-down), and the
    # queue is empty (a job's ack follows its result by a moment).
    def drained(state: dict[str, Any]) -> bool:
        depth = state.get("depth") or {}
        return (
            state.get("workers") == 1
            and state["last_decision"]["to"] == 1
            and depth.get("ready") == 0
            and depth.get("in_flight") == 0
        )

    deadline = time.monotonic() + 120
    while not drained(down := supervised(data)):
        assert time.monotonic() < deadline, f"never scaled down: {down}"
        time.sleep(0.5)
    decision = down["last_decision"]
    assert decision["from"] >= 2 and decision["reason"] == "depth", decision
    # ... on the queue's figure: at most one worker's share left when it decided.
    assert decision["depth"]["ready"] + decision["depth"]["in_flight"] <= 20, decision
    # The log tells the same story: up from the floor, later down to it.
    steps = scalings(stack.log)
    ups = [i for i, (a, b) in enumerate(steps) if 1 <= a < b]
    downs = [i for i, (a, b) in enumerate(steps) if a > b == 1]
    assert ups and downs and ups[0] < downs[-1], steps
