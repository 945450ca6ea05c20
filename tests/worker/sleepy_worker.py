"""A real worker for the supervisor tests: the Worker runner on the queue named in argv."""

from __future__ import annotations

import os
import sys
import time

from madbwpu_r.queue import Job, open_queue
from madbwpu_r.worker.runner import Worker
from madbwpu_r.worker.supervisor import QUEUE_ENV, WORKER_NAME_ENV

name = os.environ[WORKER_NAME_ENV]


def sleep(job: Job) -> dict[str, str]:
    time.sleep(float(job.payload["seconds"]))
    return {"by": name}


queue = open_queue(sys.argv[1])
lease = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
try:
    Worker(queue, {"sleep": sleep}, queues=[os.environ[QUEUE_ENV]], lease=lease, name=name).run()
finally:
    queue.close()
