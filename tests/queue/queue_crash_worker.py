"""A real worker process for the crash tests.

usage: queue_crash_worker.py QUEUE_URL EFFECTS_DB NAME PREFETCH LEASE

Each run is recorded in `runs`; the job's effect goes to `effects` through an idempotent
write keyed by job id (the pattern real handlers follow), so a re-delivered job whose first
run already applied its effect does not apply it again.
"""

from __future__ import annotations

import sqlite3
import sys
import time

from madbwpu_r.queue import Job, open_queue
from madbwpu_r.worker.runner import Worker

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (job_id TEXT, attempt INTEGER, worker TEXT, finished INTEGER);
CREATE TABLE IF NOT EXISTS effects (job_id TEXT, attempt INTEGER, worker TEXT);
"""


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    return db


def main() -> None:
    url, effects_path, name, prefetch, lease = sys.argv[1:6]
    db = connect(effects_path)

    def effect(job: Job) -> dict:
        db.execute("INSERT INTO runs VALUES (?, ?, ?, 0)", (job.id, job.attempt, name))
        time.sleep(float(job.payload["sleep"]))
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO effects SELECT ?, ?, ? WHERE NOT EXISTS"
            " (SELECT 1 FROM effects WHERE job_id = ?)",
            (job.id, job.attempt, name, job.id),
        )
        db.execute(
            "UPDATE runs SET finished = 1 WHERE job_id = ? AND attempt = ?", (job.id, job.attempt)
        )
        db.execute("COMMIT")
        return {"worker": name}

    queue = open_queue(url)
    worker = Worker(
        queue,
        {"effect": effect},
        ["crash"],
        lease=float(lease),
        name=name,
        prefetch=int(prefetch),
    )
    worker.run()
    queue.close()
    db.close()


if __name__ == "__main__":
    main()
