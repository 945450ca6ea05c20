"""`madbwpu-r up` for the release tests, with a start-up bound that survives a loaded machine,
and `Project`: the release CLI run against that stack, as a user runs it.

The release tests start a whole stack per module; on a shared 2-core box its start-up alone can
take most of a minute, so they wait longer than `Running`'s default before calling it a failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from madbwpu_r.release.archive import deploy_archive_url
from madbwpu_r.release.project import open_release_store
from tests.e2e.test_stack import Running

START_TIMEOUT = 240.0
CLI = [sys.executable, "-m", "madbwpu_r"]
TOKEN = "2gr-uugjyishz-f0"


class ReleaseStack(Running):
    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None):  # noqa: D107
        super().__init__(data_dir, *extra, env=env, start_timeout=START_TIMEOUT)


class Project:
    """CLI commands on the stack's data directory, in the environment `up` was given."""

    def __init__(self, running: Running):
        self.running = running
        self.dir = running.data_dir

    def cli(self, *args: str, ok: int | None = 0) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*CLI, *args, "--data-dir", str(self.dir)],
            capture_output=True, text=True, timeout=120, env=self.running.env,
        )  # fmt: skip
        if ok is not None:
            assert done.returncode == ok, done.stdout + done.stderr
        return done

    def events(self, action: str) -> list:
        store = open_release_store(self.dir)
        try:
            return store.events(action_prefix=action)
        finally:
            store.close()

    def archive_of(self, deploy_id: str) -> str:
        """Where the pipeline archived the deploy's audit segment (its `deploy status` says so):
        an archive URL in production's blob store."""
        status = self.cli("deploy", "status", deploy_id).stdout
        line = next(
            (s for s in status.splitlines() if s.startswith(f"archive of {deploy_id} ")), ""
        )
        assert "audit signoff " in line, status
        where = line.split("audit signoff ", 1)[1].split()[0]
        assert where == deploy_archive_url(self.running.endpoints["production"]["blobs"], deploy_id)
        return where

    def cut(self) -> str:
        out = self.cli("release", "cut", "--env", "staging", "--as", "deployer").stdout
        return out.split("release ", 1)[1].split()[0]

    def api(self, env: str) -> str:
        return self.running.endpoints[env]["api"]

    def edge(self, env: str) -> str:
        return self.running.endpoints[env]["edge"]
