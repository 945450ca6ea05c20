"""Celery side of bench/queue.py: `celery -A bench.peers.celery_tasks worker -c 2`.

Default settings (prefork pool, early ack, default prefetch). Only the broker URL, a key
prefix (kombu's `global_keyprefix`) and the queue name are set, so the bench's keys stay
apart from everyone else's on the shared Redis.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bench"

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.broker_transport_options = {"global_keyprefix": os.environ["BENCH_NAMESPACE"]}
app.conf.task_default_queue = QUEUE


@app.task(name="noop")
def noop() -> None:
    pass
