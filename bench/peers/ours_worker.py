"""Our side of bench/queue.py: the real `Worker` runner on the Redis queue.

    python -m bench.peers.ours_worker --queue-url redis://...?prefix=P --queue bench -p 2

Like `dramatiq -p 2` and Celery's prefork pool, one command imports once and forks the
worker processes; each opens its own queue connection after the fork.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import redis

from madbwpu_r.queue import Job, open_queue
from madbwpu_r.worker.runner import Worker


def work(args: argparse.Namespace, name: str) -> None:
    marks = redis.Redis.from_url(args.marks_url)

    def noop(job: Job) -> None:
        return None

    def sleepy(job: Job) -> None:
        """Records each start; the first run sleeps so the bench can SIGKILL its worker."""
        if marks.rpush(job.payload["marker"], time.time()) == 1:
            time.sleep(3600)

    queue = open_queue(args.queue_url)
    worker = Worker(
        queue,
        {"noop": noop, "sleepy": sleepy},
        queues=[args.queue],
        lease=args.lease,
        name=name,
        prefetch=args.prefetch,
        concurrency=args.threads,
        ack_interval=args.ack_interval,
    )
    try:
        worker.run()
    finally:
        queue.close()
        if args.count_key:
            # Once at exit, so the bench can check every job really ran, at no per-job cost.
            marks.incrby(args.count_key, worker.processed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--name", default=f"bench-{os.getpid()}")
    parser.add_argument("-p", "--processes", type=int, default=1)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ack-interval", type=float, default=0.05)
    parser.add_argument("--marks-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--count-key", default=None, help="INCRBY jobs processed here at exit")
    args = parser.parse_args()
    if args.processes == 1:
        work(args, args.name)
        return
    # The parent only waits: SIGTERM reaches the whole process group, the children drain.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    children = []
    for i in range(args.processes):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = 0
            try:
                work(args, f"{args.name}-{i}")
            except BaseException:
                code = 1
                raise
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.append(pid)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue


if __name__ == "__main__":
    main()
