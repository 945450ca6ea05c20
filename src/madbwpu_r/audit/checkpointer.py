"""Periodic checkpoints, even when nothing happens, so a deleted tail is caught within minutes.

Each API process runs one for its environment's log and the project log; duplicates from
several processes are harmless (each is a valid checkpoint of the same log).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from madbwpu_r.audit.db import AuditStoreError
from madbwpu_r.audit.layout import write_witness
from madbwpu_r.audit.log import AuditLog
from madbwpu_r.signing import SigningKey

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(
        self,
        logs: Sequence[tuple[str, AuditLog]],
        key: SigningKey,
        data_dir: Path | None,
        interval: float = 60.0,
    ):
        self.logs = list(logs)
        self.key = key
        self.data_dir = data_dir
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def checkpoint_all(self) -> None:
        for name, audit in self.logs:
            try:
                cp = audit.checkpoint(self.key)
            except AuditStoreError as exc:
                log.warning("audit checkpoint of %s failed: %s", name, exc)
                continue
            if self.data_dir is not None:
                write_witness(self.data_dir, name, cp)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.checkpoint_all()
