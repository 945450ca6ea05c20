"""`madbwpu-r up` for the release tests, with a start-up bound that survives a loaded machine.

The release tests start a whole stack per module; on a shared 2-core box its start-up alone can
take most of a minute, so they wait longer than `Running`'s 60 s before calling it a failure.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import orjson

from tests.e2e.test_stack import CLI, Running

START_TIMEOUT = 240.0


class ReleaseStack(Running):
    def __init__(self, data_dir: Path, *extra: str):  # noqa: D107 - same as Running's, longer bound
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / "up.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "up", "--data-dir", str(data_dir), "--max-workers", "2", *extra],
                stdout=log, stderr=subprocess.STDOUT, process_group=0,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        endpoints = data_dir / "endpoints.json"
        while not endpoints.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"`up` did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        self.endpoints = orjson.loads(endpoints.read_bytes())
        self.tokens = {
            env: orjson.loads((data_dir / env / "secrets.json").read_bytes())
            for env in self.endpoints
        }
        self.write = {"Authorization": f"Bearer {self.tokens['staging']['write_token']}"}
        self.purge_token = self.tokens["staging"]["purge_token"]
        self.http = httpx.Client(timeout=30)
