"""A stand-in worker process for the supervisor tests: records its start and its clean stop.

It consumes nothing, so the queue depth the test sets is the depth the supervisor sees.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

out = Path(sys.argv[1])
name = os.environ["MADBWPU_R_WORKER_NAME"]
queue = os.environ["MADBWPU_R_WORKER_QUEUES"]
stopping = False


def _stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, _stop)
(out / f"{name}.started").write_text(f"{os.getpid()} {queue} {os.environ.get('EXTRA', '')}")
while not stopping:
    time.sleep(0.05)
(out / f"{name}.stopped").write_text(str(os.getpid()))
