"""Delivers committed outbox rows to the queue and the purger, at least once.

A unit of work commits its writes with the messages they cause; the relay hands each row to
the deliverer of its kind and only then marks it delivered. A process killed in between
delivers it again on its next flush (at start-up, then periodically): every deliverer is
idempotent, keyed on what the row carries (the job id, the purge's epoch and seq).

Rows of one kind are delivered in order; the first failure stops that kind until the next
flush, so a later purge never overtakes an earlier one. A kind without a deliverer here (a
CLI process has no purger) stays pending for a process that has one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from madbwpu_r.store import MetadataStore, OutboxRow, StoreError

__all__ = ["Deliverer", "OutboxRelay"]

Deliverer = Callable[[OutboxRow], Any]
log = logging.getLogger("madbwpu_r.catalog.relay")


class OutboxRelay:
    def __init__(
        self,
        store: MetadataStore,
        deliverers: Mapping[str, Deliverer],
        *,
        interval: float = 1.0,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.deliverers = dict(deliverers)
        self.interval = interval
        self.batch = batch
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self) -> dict[int, Any]:
        """Deliver what is pending now; returns each delivered row's result by its seq."""
        results: dict[int, Any] = {}
        with self._lock:
            blocked: set[str] = set()
            while True:
                kinds = [k for k in self.deliverers if k not in blocked]
                rows = self.store.pending(self.batch, kinds=kinds)
                if not rows:
                    return results
                for row in rows:
                    if row.kind in blocked:
                        continue
                    try:
                        results[row.seq] = self.deliverers[row.kind](row)
                    except Exception as exc:  # noqa: BLE001 - any failure keeps the row pending
                        blocked.add(row.kind)
                        error = f"{type(exc).__name__}: {exc}"
                        log.warning(
                            "outbox delivery failed",
                            extra={"seq": row.seq, "kind": row.kind, "error": error},
                        )
                        self.store.failed(row.seq, error)
                        continue
                    self.store.delivered(row.seq)

    def notify(self) -> None:
        """Ask the background thread to flush now (after a commit it did not deliver)."""
        self._wake.set()

    def start(self) -> None:
        """Flush at once (rows left by a process that died), then every `interval` seconds."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush()
            except StoreError as exc:
                log.warning("outbox relay cannot read the store", extra={"error": str(exc)})
            self._wake.wait(self.interval)
            self._wake.clear()
