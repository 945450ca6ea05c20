"""The effects of outbox rows: each idempotent, keyed on what the row carries."""

from __future__ import annotations

from typing import Any, Protocol

from madbwpu_r.queue import Queue
from madbwpu_r.store import OutboxRow

__all__ = ["Purger", "deliverers"]


class Purger(Protocol):
    """What the catalog needs of the purge fan-out: tell every edge these keys changed."""

    def purge(
        self,
        keys: list[str] | tuple[str, ...] = (),
        urls: list[str] | tuple[str, ...] = (),
        soft: bool = False,
        sequence: tuple[str, int] | None = None,
    ) -> dict[str, Any]: ...


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
            return purger.purge(keys=p["keys"], sequence=(p["epoch"], int(p["seq"])))

        out["purge"] = purge
    return out
