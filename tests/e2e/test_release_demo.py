"""`madbwpu-r demo` tells the whole story on a fresh directory and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(1200)  # a whole stack and many CLI processes on a shared machine
def test_demo_tells_the_story(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "madbwpu_r", "demo", "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    out = done.stdout
    assert "created guardrail 2gr-uugjyishz-f0" in out
    assert "[~] QA signoff — waiting for QA signoff: 0 of 1 qa signoffs" in out
    assert "-> 409: a direct ingest into production is refused" in out
    assert "refused: 'deployer' does not hold the qa role" in out
    assert "[x] Trigger production rollout after QA signoff" in out
    assert "X-Cache: HIT" in out and "'name': 'cyd'" in out
    assert "signed off = True" in out and "hash chain intact" in out
