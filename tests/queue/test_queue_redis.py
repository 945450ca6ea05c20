"""Redis only: the stream layout operators and KEDA look at, and retention of finished jobs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from madbwpu_r.queue import open_queue
from madbwpu_r.queue.redis import RedisQueue
from tests.queue.queue_backends import REDIS_URL, base_url


@pytest.fixture
def url(tmp_path) -> Iterator[str]:
    yield from base_url("redis", tmp_path)


def test_dead_letter_stream_and_priority_streams(url: str) -> None:
    q = open_queue(url)
    assert isinstance(q, RedisQueue)
    r = redis.Redis.from_url(REDIS_URL)
    q.enqueue("work", {}, priority=5)
    q.enqueue("work", {})
    assert r.xlen(f"{q._p}:stream:work:5") == 1 and r.xlen(f"{q._p}:stream:work:0") == 1
    job = q.claim(["work"])[0]
    assert job.priority == 5
    assert r.xpending(f"{q._p}:stream:work:5", "w")["pending"] == 1
    q.nack(job, "broken", retry=False)
    assert r.xlen(f"{q._p}:dead:work") == 1 and r.xlen(f"{q._p}:stream:work:5") == 0
    assert q.retry_dead(job.id) is True
    assert r.xlen(f"{q._p}:dead:work") == 0 and r.xlen(f"{q._p}:stream:work:5") == 1
    q.close()
    r.close()


def test_finished_jobs_expire_after_the_retention_window(url: str) -> None:
    q = open_queue(url + "&retention=1")
    job_id = q.enqueue("work", {}, idempotency_key="k")
    q.ack(q.claim(["work"])[0])
    assert q.get(job_id).state == "succeeded"
    time.sleep(2.1)
    assert q.get(job_id) is None
    assert q.list() == [] and q.list(queue="work") == []
    assert q.enqueue("work", {}, idempotency_key="k") != job_id  # the key's window is over
    q.close()
