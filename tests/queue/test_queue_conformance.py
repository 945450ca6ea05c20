"""The queue contract, checked identically on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from madbwpu_r.queue import Depth, InvalidJob, PermanentJobError, Queue


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def claim_one(q: Queue, queue: str = "work", consumer: str = "c1", lease: float | None = None):
    jobs = q.claim([queue], n=1, lease=lease, consumer=consumer)
    assert len(jobs) == 1
    return jobs[0]


def test_enqueue_claim_ack_roundtrip(q: Queue) -> None:
    job_id = q.enqueue("work", {"task": "t", "n": 1})
    info = q.get(job_id)
    assert info is not None and info.state == "ready" and info.attempts == 0
    assert info.payload == {"task": "t", "n": 1} and info.queue == "work"
    job = claim_one(q)
    assert (job.id, job.attempt, job.payload, job.queue) == (
        job_id,
        1,
        {"task": "t", "n": 1},
        "work",
    )
    assert q.get(job_id).state == "running"
    assert q.claim(["work"], n=5) == []
    assert q.ack(job, {"rows": 3}) is True
    info = q.get(job_id)
    assert info.state == "succeeded" and info.result == {"rows": 3} and info.attempts == 1
    assert q.get("no-such-job") is None


def test_claim_batch_is_distinct_and_bounded(q: Queue) -> None:
    ids = {q.enqueue("work", {"i": i}) for i in range(7)}
    first = q.claim(["work"], n=5, consumer="a")
    second = q.claim(["work"], n=5, consumer="b")
    assert len(first) == 5 and len(second) == 2
    assert {j.id for j in first} | {j.id for j in second} == ids
    assert q.ack_many([(j, None) for j in first + second]) == [True] * 7
    assert q.depth("work") == Depth(0, 0, 0, 0, 0.0)


def test_claim_from_several_queues_and_not_others(q: Queue) -> None:
    a = q.enqueue("alpha", {})
    b = q.enqueue("beta", {})
    q.enqueue("gamma", {})
    got = q.claim(["alpha", "beta"], n=10)
    assert {j.id for j in got} == {a, b}


def test_lease_expiry_redelivers_and_fences_the_stale_claim(q: Queue) -> None:
    job_id = q.enqueue("work", {})
    stale = claim_one(q, consumer="dead-worker")
    time.sleep(0.7)  # lease 0.5 s expires; nobody heartbeats
    fresh = claim_one(q, consumer="live-worker")
    assert fresh.id == job_id and fresh.attempt == 2
    # The stale claim can neither renew, settle nor release the re-delivered job.
    assert q.heartbeat(stale) is False
    assert q.ack(stale, {"from": "stale"}) is False
    assert q.nack(stale, "stale failure") is False
    assert q.release(stale) is False
    assert q.get(job_id).state == "running"
    assert q.ack(fresh, {"from": "fresh"}) is True
    info = q.get(job_id)
    assert info.state == "succeeded" and info.result == {"from": "fresh"} and info.attempts == 2


def test_heartbeat_keeps_a_long_job_leased(q: Queue) -> None:
    job_id = q.enqueue("work", {})
    job = claim_one(q)
    for _ in range(8):  # 1.2 s, more than twice the 0.5 s lease
        time.sleep(0.15)
        assert q.heartbeat(job) is True
        assert q.claim(["work"], n=1, consumer="thief") == []
    assert q.ack(job) is True
    assert q.get(job_id).attempts == 1


def test_retry_after_backoff(q: Queue) -> None:
    job_id = q.enqueue("work", {})
    job = claim_one(q)
    assert q.nack(job, "boom") is True
    info = q.get(job_id)
    assert info.last_error == "boom" and info.state in ("scheduled", "ready")
    wait_for(lambda: q.claim(["work"], n=1))
    assert q.get(job_id).attempts == 2


def test_backoff_delays_the_retry(make_queue: Callable[..., Queue]) -> None:
    q = make_queue(lease=5, backoff=30, max_attempts=3)
    job_id = q.enqueue("work", {})
    assert q.nack(claim_one(q), "boom") is True
    assert q.get(job_id).state == "scheduled"
    assert q.claim(["work"], n=1) == []
    assert q.depth("work").scheduled == 1


def test_dead_letter_after_max_attempts(q: Queue) -> None:
    job_id = q.enqueue("work", {}, max_attempts=2)
    assert q.nack(claim_one(q), "first") is True
    wait_for(lambda: q.get(job_id).state == "ready")
    job = claim_one(q)
    assert job.attempt == 2
    assert q.nack(job, "second") is True
    info = q.get(job_id)
    assert info.state == "dead" and info.last_error == "second" and info.attempts == 2
    assert q.depth("work").dead == 1
    assert [i.id for i in q.list(state="dead")] == [job_id]
    assert q.claim(["work"], n=1) == []


def test_permanent_failure_is_dead_at_once(q: Queue) -> None:
    job_id = q.enqueue("work", {})
    assert q.nack(claim_one(q), "bad input", retry=False) is True
    assert q.get(job_id).state == "dead"


def test_fail_with_a_permanent_error_is_dead_at_once_with_attempts_left(q: Queue) -> None:
    job_id = q.enqueue("work", {}, max_attempts=5)
    assert q.fail(claim_one(q), PermanentJobError("line 1: bad header")) is True
    info = q.get(job_id)
    assert info.state == "dead" and info.attempts == 1
    assert info.last_error == "line 1: bad header"  # the user's message, as is
    assert q.depth("work") == Depth(ready=0, in_flight=0, scheduled=0, dead=1, oldest_ready_age=0.0)
    time.sleep(0.15)  # past any backoff: nothing comes back
    assert q.claim(["work"], n=1) == []


def test_fail_with_any_other_error_is_retried(q: Queue) -> None:
    job_id = q.enqueue("work", {})
    assert q.fail(claim_one(q), ConnectionError("api down")) is True
    info = q.get(job_id)
    assert info.state in ("scheduled", "ready") and info.last_error == "ConnectionError: api down"
    wait_for(lambda: q.depth("work").ready == 1)
    assert claim_one(q).attempt == 2


def test_fail_is_fenced_like_nack(make_queue) -> None:
    q = make_queue(lease=0.3, max_attempts=5)
    job_id = q.enqueue("work", {})
    stale = claim_one(q)
    time.sleep(0.4)
    current = claim_one(q, consumer="c2")
    assert q.fail(stale, PermanentJobError("late")) is False
    assert q.get(job_id).state == "running"
    assert q.ack(current) is True


def test_a_job_whose_workers_keep_dying_is_dead_lettered(make_queue) -> None:
    q = make_queue(lease=0.3, max_attempts=2)
    job_id = q.enqueue("work", {})
    claim_one(q)
    time.sleep(0.4)
    claim_one(q)  # attempt 2, worker "dies" again
    time.sleep(0.4)
    assert q.claim(["work"], n=1) == []
    info = q.get(job_id)
    assert info.state == "dead" and "lease expired" in info.last_error


def test_retry_dead_gives_a_fresh_budget(q: Queue) -> None:
    job_id = q.enqueue("work", {})
    assert q.retry_dead(job_id) is False  # not dead
    q.nack(claim_one(q), "bad", retry=False)
    assert q.retry_dead(job_id) is True
    info = q.get(job_id)
    assert info.state == "ready" and info.attempts == 0
    assert q.depth("work").dead == 0
    job = claim_one(q)
    assert job.attempt == 1
    assert q.ack(job) is True
    assert q.retry_dead("no-such-job") is False


def test_idempotency_key_deduplicates_producer_retries(q: Queue) -> None:
    first = q.enqueue("work", {"v": 1}, idempotency_key="req-42")
    again = q.enqueue("work", {"v": 2}, idempotency_key="req-42")
    other = q.enqueue("other", {"v": 3}, idempotency_key="req-42")
    assert first == again and other != first
    assert q.depth("work").ready == 1
    assert q.get(first).payload == {"v": 1}
    job = claim_one(q)
    q.ack(job)
    assert q.enqueue("work", {"v": 4}, idempotency_key="req-42") == first
    assert q.depth("work").ready == 0


def test_concurrent_enqueues_with_one_key_make_one_job(q: Queue) -> None:
    ids: list[str] = []

    def produce() -> None:
        ids.append(q.enqueue("work", {}, idempotency_key="same"))

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and q.depth("work").ready == 1


def test_delayed_job_waits(q: Queue) -> None:
    job_id = q.enqueue("work", {}, delay=0.6)
    assert q.get(job_id).state == "scheduled"
    assert q.depth("work").scheduled == 1
    assert q.claim(["work"], n=1) == []
    wait_for(lambda: q.claim(["work"], n=1))
    assert q.get(job_id).state == "running"


def test_priorities_highest_first(q: Queue) -> None:
    low = q.enqueue("work", {}, priority=-5)
    mid = q.enqueue("work", {})
    high = q.enqueue("work", {}, priority=10)
    mid2 = q.enqueue("work", {})
    assert [claim_one(q).id for _ in range(2)] == [high, mid]
    assert [j.id for j in q.claim(["work"], n=5)] == [mid2, low]


def test_depth_figures(q: Queue) -> None:
    a = q.enqueue("work", {})
    q.enqueue("work", {})
    q.enqueue("work", {})
    q.enqueue("work", {}, delay=60)
    q.enqueue("elsewhere", {})
    time.sleep(0.05)
    running = claim_one(q)
    assert running.id == a
    q.nack(claim_one(q), "x", retry=False)
    depth = q.depth("work")
    assert (depth.ready, depth.in_flight, depth.scheduled, depth.dead) == (1, 1, 1, 1)
    assert 0 < depth.oldest_ready_age < 60
    assert q.depth("empty") == Depth(0, 0, 0, 0, 0.0)


def test_release_returns_the_job_without_spending_an_attempt(q: Queue) -> None:
    job_id = q.enqueue("work", {})
    assert q.release(claim_one(q)) is True
    info = q.get(job_id)
    assert info.state == "ready" and info.attempts == 0
    assert claim_one(q).attempt == 1


def test_expire_leases_hands_a_dead_consumers_jobs_over_at_once(q: Queue) -> None:
    mine = q.enqueue("work", {"i": 1})
    theirs = q.enqueue("work", {"i": 2})
    elsewhere = q.enqueue("other", {"i": 3})
    lost = claim_one(q, consumer="dead-1", lease=60)
    kept = claim_one(q, consumer="alive-1", lease=60)
    claim_one(q, "other", consumer="dead-1", lease=60)
    assert lost.id == mine and kept.id == theirs
    assert q.claim(["work"], n=1, consumer="c2") == []  # both leased for a minute

    assert q.expire_leases("dead-1", ["work"]) == 1
    again = claim_one(q, consumer="c2")
    assert (again.id, again.attempt) == (mine, 2)  # the started attempt stays counted
    assert q.ack(lost) is False  # fenced: the dead consumer's late ack changes nothing
    assert q.ack(again) is True and q.get(mine).state == "succeeded"
    assert q.get(theirs).state == "running" and q.heartbeat(kept) is True
    assert q.get(elsewhere).state == "running"  # only the queues named
    assert q.expire_leases("dead-1", ["work"]) == 0
    assert q.expire_leases("nobody", ["work", "other"]) == 0


def test_list_filters_and_orders_newest_first(q: Queue) -> None:
    a = q.enqueue("work", {"i": 1})
    time.sleep(0.01)
    b = q.enqueue("work", {"i": 2})
    time.sleep(0.01)
    c = q.enqueue("other", {"i": 3})
    assert [i.id for i in q.list()] == [c, b, a]
    assert [i.id for i in q.list(queue="work")] == [b, a]
    assert [i.id for i in q.list(limit=1)] == [c]
    job = q.claim(["work"], n=1)[0]
    assert [i.id for i in q.list(state="running")] == [job.id]
    assert {i.id for i in q.list(state="ready")} == {c, b, a} - {job.id}


def test_bad_arguments_are_refused(q: Queue) -> None:
    with pytest.raises(InvalidJob):
        q.enqueue("bad queue name!", {})
    with pytest.raises(InvalidJob):
        q.enqueue("work", {"x": object()})
    with pytest.raises(InvalidJob):
        q.enqueue("work", {}, delay=-1)
    with pytest.raises(InvalidJob):
        q.enqueue("work", {}, max_attempts=0)
    with pytest.raises(InvalidJob):
        q.list(state="sleeping")
    assert q.list() == []


def test_a_caller_named_job_is_enqueued_once(q: Queue) -> None:
    """An outbox relay delivering the same row twice must not make two jobs."""
    assert q.enqueue("work", {"n": 1}, job_id="outbox-job-1") == "outbox-job-1"
    assert q.enqueue("work", {"n": 2}, job_id="outbox-job-1") == "outbox-job-1"
    assert [(i.id, i.payload) for i in q.list()] == [("outbox-job-1", {"n": 1})]
    job = q.claim("work")[0]
    assert q.ack(job)
    assert q.enqueue("work", {"n": 3}, job_id="outbox-job-1") == "outbox-job-1"
    assert q.get("outbox-job-1").state == "succeeded"
    with pytest.raises(InvalidJob):
        q.enqueue("work", {}, job_id="not a valid id!")


def test_sweep_forgets_only_old_succeeded_jobs(q: Queue) -> None:
    done = q.enqueue("work", {"n": 1})
    dead = q.enqueue("work", {"n": 2}, max_attempts=1)
    waiting = q.enqueue("work", {"n": 3})
    for job in q.claim("work", n=2):
        if job.id == done:
            assert q.ack(job)
        else:
            q.nack(job, "broken", retry=False)
    assert q.sweep_succeeded(older_than=3600) == 0  # too recent
    assert q.get(done).state == "succeeded"
    time.sleep(0.05)
    assert q.sweep_succeeded(older_than=0.01) == 1
    assert q.get(done) is None
    assert {i.id for i in q.list()} == {dead, waiting}
    assert q.get(dead).state == "dead" and q.get(waiting).state == "ready"
    with pytest.raises(InvalidJob):
        q.sweep_succeeded(older_than=-1)


def test_workers_announce_renew_move_and_retire(make_queue: Callable[..., Queue]) -> None:
    """Presence is shared through the queue: another connection (process) sees the counts."""
    q, other = make_queue(), make_queue()
    assert other.workers("ingest") == 0
    q.announce("ingest-1", ["ingest"], ttl=60)
    q.announce("ingest-2", ["ingest", "derive"], ttl=60)
    assert (other.workers("ingest"), other.workers("derive"), other.workers("mail")) == (2, 1, 0)
    q.announce("ingest-1", ["ingest"], ttl=60)  # a renewal is the same worker, not another
    assert other.workers("ingest") == 2
    q.announce("ingest-2", ["mail"], ttl=60)  # announcing again replaces the queues
    assert (other.workers("ingest"), other.workers("derive"), other.workers("mail")) == (1, 0, 1)
    other.retire("ingest-1")
    other.retire("never-announced")
    assert (q.workers("ingest"), q.workers("mail")) == (0, 1)
    q.announce("ingest-2", [], ttl=60)  # serving nothing: counted nowhere
    assert q.workers("mail") == 0


def test_workers_expire_when_no_longer_announced(q: Queue) -> None:
    """A killed worker never retires: its presence ends with its ttl, and is then cleaned up."""
    q.announce("killed", ["ingest"], ttl=0.05)
    q.announce("alive", ["ingest"], ttl=3600)
    time.sleep(0.1)
    assert q.workers("ingest") == 1
    q.announce("alive", ["ingest"], ttl=3600)  # removes the expired record on its way
    assert q.workers("ingest") == 1
    q.retire("alive")
    assert q.workers("ingest") == 0


@pytest.mark.parametrize(
    ("worker", "queues", "ttl"),
    [
        ("", ["ingest"], 10.0),
        ("has space", ["ingest"], 10.0),
        ("w" * 129, ["ingest"], 10.0),
        ("w", ["bad queue!"], 10.0),
        ("w", ["ingest"], 0.0),
        ("w", ["ingest"], float("nan")),
        ("w", ["ingest"], float("inf")),
    ],
)
def test_announce_rejects_bad_input(q: Queue, worker: str, queues: list[str], ttl: float) -> None:
    with pytest.raises(InvalidJob):
        q.announce(worker, queues, ttl)
    with pytest.raises(InvalidJob):
        q.workers("bad queue!")
    assert q.workers("ingest") == 0
