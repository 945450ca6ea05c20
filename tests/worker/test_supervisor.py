"""The local autoscaler: the pure decision, then real worker processes on a real SQLite queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from madbwpu_r.queue import Depth, open_queue
from madbwpu_r.worker.supervisor import (
    ScalingPolicy,
    Supervisor,
    desired_workers,
    read_status,
)
from tests.queue.queue_backends import BACKENDS, base_url

IDLE_WORKER = Path(__file__).with_name("idle_worker.py")


def depth(ready: int = 0, in_flight: int = 0, age: float = 0.0) -> Depth:
    return Depth(ready=ready, in_flight=in_flight, scheduled=0, dead=0, oldest_ready_age=age)


POLICY = ScalingPolicy(min_workers=1, max_workers=5, jobs_per_worker=10, max_ready_age=30.0)


@pytest.mark.parametrize(
    ("d", "current", "expected"),
    [
        (depth(), 3, 1),  # idle: back to the floor
        (depth(ready=1), 0, 1),  # any ready job gets a worker
        (depth(ready=25), 1, 3),  # ceil(25 / 10)
        (depth(ready=15, in_flight=10), 2, 3),  # running jobs count as backlog too
        (depth(ready=1000), 2, 5),  # capped at max
        (depth(ready=3, age=45.0), 2, 3),  # slow jobs waiting too long: one more
        (depth(ready=3, age=45.0), 5, 5),  # ... but never above max
        (depth(in_flight=4), 2, 1),  # only running jobs, nothing waiting
    ],
)
def test_desired_workers(d: Depth, current: int, expected: int) -> None:
    assert desired_workers(d, current, POLICY) == expected


def test_desired_workers_can_scale_to_zero() -> None:
    policy = ScalingPolicy(min_workers=0, max_workers=2)
    assert desired_workers(depth(), 2, policy) == 0
    assert desired_workers(depth(ready=1), 0, policy) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_workers": 3, "max_workers": 2},
        {"min_workers": -1},
        {"max_workers": 0, "min_workers": 0},
        {"jobs_per_worker": 0},
        {"interval": 0},
        {"cooldown": -1},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ScalingPolicy(**kwargs)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def queue_url(tmp_path: Path) -> str:
    return "sqlite:///" + str((tmp_path / "state.sqlite").resolve())


@pytest.fixture
def supervisor(tmp_path: Path, queue_url: str) -> Iterator[Supervisor]:
    out = tmp_path / "workers"
    out.mkdir()
    sup = Supervisor(
        queue_url,
        ["ingest", "derive"],
        [sys.executable, str(IDLE_WORKER), str(out)],
        env={"EXTRA": "from-supervisor"},
        policy=ScalingPolicy(
            min_workers=1,
            max_workers=3,
            jobs_per_worker=4,
            cooldown=0.5,
            interval=0.1,
            stop_timeout=10.0,
        ),
        status_path=tmp_path / "staging" / "supervisor.json",
    )
    yield sup
    sup.stop(timeout=10.0)


def written_counts(path: Path) -> dict[str, int]:
    """Workers per queue in the supervisor's own file (what a restarted supervisor reads)."""
    queues = (read_status(path) or {}).get("queues", {})
    return {queue: info["workers"] for queue, info in queues.items()}


def test_scales_up_on_depth_down_when_idle_and_respawns(
    supervisor: Supervisor, queue_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "workers"
    status_path = tmp_path / "staging" / "supervisor.json"
    q = open_queue(queue_url)
    try:
        for i in range(10):
            q.enqueue("ingest", {"task": "noop", "i": i})
        supervisor.start()

        # Scale up: 10 ready jobs at 4 per worker -> 3 workers (the max) on "ingest";
        # the idle "derive" queue keeps its floor of 1.
        wait_for(lambda: supervisor.worker_count("ingest") == 3)
        wait_for(lambda: len(list(out.glob("ingest-*.started"))) == 3)
        assert supervisor.worker_count("derive") == 1
        started = (out / "ingest-1.started").read_text().split()
        assert started[1:] == ["ingest", "from-supervisor"]
        wait_for(lambda: written_counts(status_path) == {"ingest": 3, "derive": 1})
        state = read_status(status_path)
        assert state is not None and state["running"] is True
        assert sorted(state["queues"]["ingest"]["pids"]) == sorted(supervisor.pids("ingest"))
        assert state["queues"]["ingest"]["last_decision"]["to"] == 3

        # Scale down when idle: drain the queue; surplus workers get SIGTERM and stop cleanly.
        while jobs := q.claim(["ingest"], n=10, lease=30.0, consumer="test"):
            for job in jobs:
                q.ack(job)
        wait_for(lambda: supervisor.worker_count("ingest") == 1)
        wait_for(lambda: len(list(out.glob("ingest-*.stopped"))) == 2)
        assert not (out / "ingest-1.stopped").exists()  # newest stopped first

        # Respawn: a worker that dies is replaced, keeping min_workers.
        (victim,) = supervisor.pids("ingest")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: supervisor.pids("ingest") not in ([], [victim]))
        assert supervisor.worker_count("ingest") == 1
        wait_for(lambda: (read_status(status_path) or {})["queues"]["ingest"]["restarts"] == 1)
    finally:
        q.close()

    pids = supervisor.pids("ingest") + supervisor.pids("derive")
    supervisor.stop(timeout=10.0)
    assert supervisor.worker_count() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    state = read_status(status_path)
    assert state is not None and state["running"] is False


def test_depth_source_down_keeps_the_floor(tmp_path: Path) -> None:
    def broken(queue: str) -> Depth:
        raise OSError("queue unreachable")

    out = tmp_path / "workers"
    out.mkdir()
    sup = Supervisor(
        "sqlite:///unused",
        ["ingest"],
        [sys.executable, str(IDLE_WORKER), str(out)],
        policy=ScalingPolicy(min_workers=2, max_workers=4, interval=0.1),
        depth_of=broken,
    )
    sup.start()
    try:
        wait_for(lambda: sup.worker_count() == 2)
    finally:
        sup.stop(timeout=10.0)
    assert sup.worker_count() == 0


def test_real_workers_drain_the_queue_then_scale_down(tmp_path: Path, queue_url: str) -> None:
    q = open_queue(queue_url)
    ids = [q.enqueue("ingest", {"task": "sleep", "seconds": 0.2}) for _ in range(30)]
    sup = Supervisor(
        queue_url,
        ["ingest"],
        [sys.executable, str(Path(__file__).with_name("sleepy_worker.py")), queue_url],
        policy=ScalingPolicy(
            min_workers=1, max_workers=3, jobs_per_worker=5, cooldown=0.3, interval=0.1
        ),
    )
    sup.start()
    try:
        wait_for(lambda: sup.worker_count() == 3)
        wait_for(lambda: q.depth("ingest") == Depth(0, 0, 0, 0, 0.0), timeout=120.0)
        wait_for(lambda: sup.worker_count() == 1)
        infos = [q.get(job_id) for job_id in ids]
        assert all(info is not None and info.state == "succeeded" for info in infos)
        assert len({info.result["by"] for info in infos if info and info.result}) > 1
    finally:
        sup.stop(timeout=20.0)
        q.close()


def test_workers_left_by_a_killed_supervisor_are_stopped(tmp_path: Path, queue_url: str) -> None:
    out = tmp_path / "workers"
    out.mkdir()
    argv = [sys.executable, str(IDLE_WORKER), str(out)]
    env = {**os.environ, "MADBWPU_R_WORKER_NAME": "ingest-9", "MADBWPU_R_WORKER_QUEUES": "ingest"}
    orphan = subprocess.Popen(argv, env=env, process_group=0)
    status_path = tmp_path / "supervisor.json"
    try:
        wait_for(lambda: (out / "ingest-9.started").exists())
        stale = {"pid": 999_999_999, "running": True, "queues": {"ingest": {"argv": {}}}}
        stale["queues"]["ingest"]["argv"] = {str(orphan.pid): argv, "12345": ["not", "it"]}
        status_path.write_bytes(orjson.dumps(stale))
        sup = Supervisor(queue_url, ["ingest"], argv, policy=POLICY, status_path=status_path)
        sup.start()
        try:
            assert orphan.wait(timeout=30) == 0
            assert (out / "ingest-9.stopped").exists()
        finally:
            sup.stop(timeout=10.0)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sigkilled_workers_job_runs_again_long_before_its_lease(
    tmp_path: Path, backend: str
) -> None:
    """The supervisor ends a dead worker's leases: its job is re-run by the next worker.

    The worker's lease is 120 s and the test waits at most 60 s, so the job can only run again
    in time through the supervisor, on every backend.
    """
    urls = base_url(backend, tmp_path)
    queue_url = next(urls)
    q = open_queue(queue_url)
    sup = Supervisor(
        queue_url,
        ["ingest"],
        [sys.executable, str(Path(__file__).with_name("sleepy_worker.py")), queue_url, "120"],
        policy=ScalingPolicy(min_workers=1, max_workers=1, interval=0.1),
    )
    sup.start()
    try:
        job_id = q.enqueue("ingest", {"task": "sleep", "seconds": 3})
        wait_for(lambda: (info := q.get(job_id)) is not None and info.state == "running")
        (victim,) = sup.pids("ingest")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: q.get(job_id).state == "succeeded", timeout=60.0)
        info = q.get(job_id)
        assert info.attempts == 2 and info.result == {"by": "ingest-2"}
    finally:
        sup.stop(timeout=20.0)
        q.close()
        next(urls, None)
