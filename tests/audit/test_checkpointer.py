"""The periodic checkpointer signs checkpoints of idle logs and keeps the witness copy."""

from __future__ import annotations

import time
from pathlib import Path

from madbwpu_r.audit.checkpointer import Checkpointer
from madbwpu_r.audit.layout import AUDIT_KEY, open_log, read_witness
from madbwpu_r.identity.keyring import Keyring
from madbwpu_r.identity.setup import init_project


def test_idle_logs_get_checkpoints(tmp_path: Path) -> None:
    init_project(tmp_path)
    log = open_log(tmp_path, "production")
    before = len(log.checkpoints())
    cp = Checkpointer([("production", log)], Keyring(tmp_path).load(AUDIT_KEY), tmp_path, 0.05)
    cp.start()
    deadline = time.monotonic() + 30
    while len(log.checkpoints()) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    cp.stop()
    after = log.checkpoints()
    assert len(after) >= before + 2
    assert all(c.size == 0 for c in after)  # nothing happened, yet each one is new and signed
    assert read_witness(tmp_path, "production") in after
    log.close()
