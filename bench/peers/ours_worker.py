"""Our side of bench/queue.py: one worker process, the real `Worker` runner on the Redis queue.

python -m bench.peers.ours_worker --queue-url redis://...?prefix=P --queue bench
"""

from __future__ import annotations

import argparse
import time

import redis

from madbwpu_r.queue import Job, open_queue
from madbwpu_r.worker.runner import Worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--marks-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    marks = redis.Redis.from_url(args.marks_url)

    def noop(job: Job) -> None:
        return None

    def sleepy(job: Job) -> None:
        """Records each start; the first run sleeps so the bench can SIGKILL its worker."""
        if marks.rpush(job.payload["marker"], time.time()) == 1:
            time.sleep(3600)

    queue = open_queue(args.queue_url)
    try:
        Worker(
            queue,
            {"noop": noop, "sleepy": sleepy},
            queues=[args.queue],
            lease=args.lease,
            name=args.name,
            prefetch=args.prefetch,
            concurrency=args.threads,
        ).run()
    finally:
        queue.close()


if __name__ == "__main__":
    main()
