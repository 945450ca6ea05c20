"""`jobs retry --as NAME`: the retry of a dead job is recorded with its actor, in its commit."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from madbwpu_r.audit.layout import open_log
from madbwpu_r.cli.main import app
from madbwpu_r.config import EnvPaths
from madbwpu_r.identity.setup import init_project
from madbwpu_r.queue import open_queue


def test_a_retry_is_audited_with_its_actor(tmp_path: Path) -> None:
    data = tmp_path / "d"
    init_project(data)
    q = open_queue(EnvPaths(data, "staging").ensure().default_queue_url)
    job_id = q.enqueue("ingest", {"task": "ingest"}, max_attempts=1)
    (job,) = q.claim(["ingest"], n=1)
    q.nack(job, "boom", retry=True)
    q.close()
    runner = CliRunner()
    result = runner.invoke(app, ["jobs", "retry", job_id, "--as", "ghost", "--data-dir", str(data)])
    assert result.exit_code == 1 and "not a registered identity" in result.output
    result = runner.invoke(app, ["jobs", "retry", job_id, "--as", "admin", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    log = open_log(data, "staging")
    (entry,) = log.query(action="job.retry")
    log.close()
    assert (entry.actor, entry.target) == ("admin", f"job:{job_id}")
