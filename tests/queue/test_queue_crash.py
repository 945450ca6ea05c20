"""Real worker processes killed mid-job (SIGKILL) or asked to stop (SIGTERM), on every backend."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from madbwpu_r.queue import Queue, open_queue

WORKER = Path(__file__).with_name("queue_crash_worker.py")
LEASE = 1.0


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


@pytest.fixture
def effects(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "effects.sqlite"
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE runs (job_id TEXT, attempt INTEGER, worker TEXT, finished INTEGER)")
    db.execute("CREATE TABLE effects (job_id TEXT, attempt INTEGER, worker TEXT)")
    yield db
    db.close()


@pytest.fixture
def spawn(queue_url: str, effects: sqlite3.Connection, tmp_path: Path):
    procs: list[subprocess.Popen[bytes]] = []
    path = effects.execute("PRAGMA database_list").fetchone()[2]

    def start(name: str, prefetch: int = 1) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), queue_url, path, name, str(prefetch), str(LEASE)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.fixture
def queue(queue_url: str) -> Iterator[Queue]:
    q = open_queue(queue_url)
    yield q
    q.close()


def scalar(db: sqlite3.Connection, sql: str, *args: object) -> object:
    return db.execute(sql, args).fetchone()[0]


@pytest.mark.parametrize("prefetch", [1, 4])
def test_sigkill_mid_job_loses_nothing_and_applies_effects_once(
    queue: Queue, effects: sqlite3.Connection, spawn, prefetch: int
) -> None:
    n = 40
    ids = [queue.enqueue("crash", {"task": "effect", "sleep": 0.04}) for _ in range(n)]
    victim = spawn("victim", prefetch)
    spawn("steady", prefetch)
    # Kill the victim while it is inside a handler, after some work has been done.
    wait_for(lambda: scalar(effects, "SELECT count(*) FROM effects") >= 5)
    wait_for(
        lambda: scalar(
            effects, "SELECT count(*) FROM runs WHERE worker = 'victim' AND finished = 0"
        )
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    interrupted = [
        r[0]
        for r in effects.execute("SELECT job_id FROM runs WHERE worker = 'victim' AND finished = 0")
    ]
    assert interrupted
    spawn("replacement", prefetch)

    wait_for(lambda: all(queue.get(i).state == "succeeded" for i in ids), timeout=60)
    assert scalar(effects, "SELECT count(DISTINCT job_id) FROM effects") == n
    assert scalar(effects, "SELECT count(*) FROM effects") == n  # no effect applied twice
    assert {r[0] for r in effects.execute("SELECT job_id FROM effects")} == set(ids)
    for job_id in interrupted:  # the job killed mid-run ran again, under a later attempt
        assert queue.get(job_id).attempts >= 2
        assert (
            scalar(effects, "SELECT count(*) FROM runs WHERE job_id = ? AND finished = 1", job_id)
            >= 1
        )
    depth = queue.depth("crash")
    assert (depth.ready, depth.in_flight, depth.scheduled, depth.dead) == (0, 0, 0, 0)


def test_sigterm_finishes_the_current_job_releases_the_rest_and_exits_0(
    queue: Queue, effects: sqlite3.Connection, spawn
) -> None:
    ids = [queue.enqueue("crash", {"task": "effect", "sleep": 0.8}) for _ in range(3)]
    proc = spawn("graceful", prefetch=3)
    wait_for(lambda: scalar(effects, "SELECT count(*) FROM runs"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    states = sorted(queue.get(i).state for i in ids)
    assert states == ["ready", "ready", "succeeded"]
    assert scalar(effects, "SELECT count(*) FROM runs") == 1
    assert scalar(effects, "SELECT count(*) FROM effects") == 1
    assert all(queue.get(i).attempts == 0 for i in ids if queue.get(i).state == "ready")
