"""The effects of outbox rows: each idempotent, keyed on what the row carries."""

from __future__ import annotations

from typing import Any

from madbwpu_r.purge import Purger
from madbwpu_r.queue import Queue
from madbwpu_r.store import OutboxRow

__all__ = ["Purger", "deliverers"]


def deliverers(queue: Queue, purger: Purger | None = None) -> dict[str, Any]:
    """The deliverers of one process: the queue's always, the purger's when it has one."""

    def enqueue(row: OutboxRow) -> str:
        p = row.payload
        return queue.enqueue(p["queue"], p["payload"], job_id=p["job_id"])

    def retry(row: OutboxRow) -> bool:
        return queue.retry_dead(row.payload["job_id"])

    out: dict[str, Any] = {"enqueue": enqueue, "retry": retry}
    if purger is not None:

        def purge(row: OutboxRow) -> dict[str, Any]:
            p = row.payload
            report = purger.purge(keys=p["keys"], sequence=(p["epoch"], int(p["seq"])))
            return report.as_dict()

        out["purge"] = purge
    return out
