"""`up` SIGKILLed: every tier process goes with it, and the next `up` finds all data."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson

from tests.e2e.test_stack import Running


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its reaper is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def child_pids(pid: int) -> list[int]:
    """Children of every thread (the supervisor thread starts the workers); a thread or process
    that ends while it is read has none."""
    direct = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []
    for task in tasks:
        try:
            direct += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return direct + [c for d in direct for c in child_pids(d) if alive(d)]


def test_sigkilled_up_leaves_no_orphans_and_keeps_data(tmp_path):
    first = Running(tmp_path / "data")
    try:
        first.ingest("staging", "people", b"id,name\n1,ann\n")
        children = child_pids(first.proc.pid)
        assert len(children) >= 6  # 2 APIs, 2 edges, at least 2 workers
    except BaseException:
        first.stop()
        raise
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in children):
        assert time.monotonic() < deadline, [p for p in children if alive(p)]
        time.sleep(0.1)
    first.http.close()

    second = Running(tmp_path / "data")
    try:
        assert second.endpoints == orjson.loads((tmp_path / "data" / "endpoints.json").read_bytes())
        edge = second.endpoints["staging"]["edge"]
        assert second.http.get(f"{edge}/v1/datasets/people/rows").json()["rows"] == [
            {"id": 1, "name": "ann"}
        ]
    finally:
        assert second.stop() == 0
