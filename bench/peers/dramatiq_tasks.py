"""Dramatiq side of bench/queue.py: `dramatiq bench.peers.dramatiq_tasks -p 2 -t 8`.

Default broker settings and middleware, as Dramatiq's users run it; only the Redis URL and
key namespace come from the environment so the bench does not touch anyone else's keys.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ["BENCH_REDIS_URL"]
NAMESPACE = os.environ["BENCH_NAMESPACE"]
QUEUE = "bench"
KILL_QUEUE = "bench_kill"

broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE)
dramatiq.set_broker(broker)
_marks = redis.Redis.from_url(REDIS_URL)


@dramatiq.actor(queue_name=QUEUE)
def noop() -> None:
    pass


@dramatiq.actor(queue_name=KILL_QUEUE)
def sleepy(marker: str) -> None:
    """Records each start; the first run sleeps so the bench can SIGKILL its worker."""
    if _marks.rpush(marker, time.time()) == 1:
        time.sleep(3600)
