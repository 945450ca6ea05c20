"""The Worker on every backend, in-process (threads); real processes are in test_queue_crash."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from madbwpu_r.queue import Job, Queue
from madbwpu_r.worker.runner import PermanentError, Worker


def wait_for(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def start(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def test_handlers_results_failures_and_permanent_errors(q: Queue) -> None:
    calls: Counter[str] = Counter()

    def ok(job: Job) -> dict:
        return {"double": job.payload["n"] * 2}

    def flaky(job: Job) -> None:
        calls[job.id] += 1
        if job.attempt == 1:
            raise RuntimeError("transient")

    def broken(job: Job) -> None:
        raise PermanentError("bad file")

    a = q.enqueue("work", {"task": "ok", "n": 21})
    b = q.enqueue("work", {"task": "flaky"})
    c = q.enqueue("work", {"task": "broken"})
    d = q.enqueue("work", {"task": "unknown"})
    worker = Worker(q, {"ok": ok, "flaky": flaky, "broken": broken}, queues=["work"], lease=2)
    thread = start(worker)
    wait_for(lambda: q.get(b).state == "succeeded")
    wait_for(lambda: all(q.get(i).state in ("succeeded", "dead") for i in (a, c, d)))
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert q.get(a).result == {"double": 42}
    assert calls[b] == 2 and q.get(b).attempts == 2 and "transient" in q.get(b).last_error
    assert q.get(c).state == "dead" and q.get(c).attempts == 1 and q.get(c).last_error == "bad file"
    assert q.get(d).state == "dead" and "no handler" in q.get(d).last_error


def test_long_job_runs_once_while_its_worker_heartbeats(q: Queue) -> None:
    """Lease 0.5 s, job 1.6 s, a second idle worker ready to steal: it never gets the job."""
    runs: Counter[str] = Counter()

    def slow(job: Job) -> None:
        runs[job.id] += 1
        time.sleep(1.6)

    job_id = q.enqueue("work", {"task": "slow"})
    workers = [Worker(q, {"slow": slow}, ["work"], lease=0.5, name=f"w{i}") for i in range(2)]
    threads = [start(w) for w in workers]
    wait_for(lambda: q.get(job_id).state == "succeeded")
    for w in workers:
        w.stop()
    for t in threads:
        t.join(10)
    assert runs[job_id] == 1 and q.get(job_id).attempts == 1


@pytest.mark.parametrize("concurrency,prefetch", [(1, 8), (4, 4)])
def test_drains_every_job_exactly_once_in_burst_mode(
    q: Queue, concurrency: int, prefetch: int
) -> None:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def noop(job: Job) -> None:
        with lock:
            seen[job.id] += 1

    ids = [q.enqueue("work", {"task": "noop", "i": i}) for i in range(60)]
    worker = Worker(
        q, {"noop": noop}, ["work"], lease=5, prefetch=prefetch, concurrency=concurrency
    )
    worker.run(burst=True)
    assert sorted(seen) == sorted(ids) and set(seen.values()) == {1}
    assert worker.processed == 60
    assert q.depth("work").ready == 0 and q.depth("work").in_flight == 0


@pytest.mark.parametrize("concurrency", [1, 2])
def test_stop_finishes_the_running_job_and_releases_the_prefetched(
    q: Queue, concurrency: int
) -> None:
    started = threading.Event()
    gate = threading.Event()

    def block(job: Job) -> dict:
        started.set()
        gate.wait(10)
        return {"done": True}

    ids = [q.enqueue("work", {"task": "block"}) for _ in range(6)]
    worker = Worker(q, {"block": block}, ["work"], lease=5, prefetch=6, concurrency=concurrency)
    thread = start(worker)
    assert started.wait(10)
    worker.stop()
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    states = Counter(q.get(i).state for i in ids)
    assert states["succeeded"] == worker.processed >= 1
    assert states["ready"] == 6 - worker.processed  # released, not left leased
    assert all(q.get(i).attempts == 0 for i in ids if q.get(i).state == "ready")


def test_worker_whose_lease_was_lost_does_not_ack(make_queue) -> None:
    """A worker stalled past its lease (no heartbeat reached the queue) cannot complete."""
    q = make_queue(lease=0.3)
    job_id = q.enqueue("work", {"task": "t"})
    worker = Worker(q, {"t": lambda job: {"by": "stale"}}, ["work"], lease=0.3)
    (stale,) = worker._claim(1)  # claimed, then the worker stalls: no heartbeat thread runs
    time.sleep(0.4)
    fresh = q.claim(["work"], lease=5, consumer="healthy")[0]
    assert fresh.attempt == 2
    worker._process(stale)
    worker._flush()
    assert q.get(job_id).state == "running" and q.get(job_id).result is None
    assert q.ack(fresh, {"by": "fresh"}) is True
    assert q.get(job_id).result == {"by": "fresh"}


def test_rejects_bad_options(q: Queue) -> None:
    with pytest.raises(ValueError):
        Worker(q, {}, lease=0)
    with pytest.raises(ValueError):
        Worker(q, {}, prefetch=0)


def test_running_workers_are_counted_through_the_queue(make_queue) -> None:
    """Two workers with one name are two; another connection counts them; a stop retires."""
    q, observer = make_queue(), make_queue()
    workers = [
        Worker(q, {"work": lambda job: None}, lease=30, name="ingest-1", install_signals=False)
        for _ in range(2)
    ]
    threads = [start(w) for w in workers]
    wait_for(lambda: observer.workers("work") == 2)
    assert observer.workers("other") == 0
    workers[0].stop()
    threads[0].join(10)
    assert observer.workers("work") == 1  # retired at once, not after its 30 s lease
    workers[1].stop()
    threads[1].join(10)
    assert observer.workers("work") == 0
