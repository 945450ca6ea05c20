"""A dead ingest job leaves no upload behind; a job that will be retried keeps its upload.

(An invalid file, which fails at once, is covered against real processes in
tests/e2e/test_security.py.)
"""

from __future__ import annotations

import socket

import pytest

from madbwpu_r.config import EnvPaths
from madbwpu_r.queue import Job
from madbwpu_r.worker.api_client import ApiClient
from madbwpu_r.worker.ingest import IngestHandler


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def handler(tmp_path):
    paths = EnvPaths(tmp_path, "staging").ensure()
    # A real client to an API that is not there: every event fails as a transient fault.
    client = ApiClient(f"http://127.0.0.1:{closed_port()}", "token", attempts=1)
    yield IngestHandler(paths, client)
    client.close()


def job(upload: str, attempt: int, max_attempts: int = 3) -> Job:
    return Job(
        id="j1",
        queue="ingest",
        payload={"task": "ingest", "dataset": "d", "upload": upload},
        attempt=attempt,
        max_attempts=max_attempts,
        priority=0,
        enqueued_at=0.0,
    )


def test_a_transient_failure_keeps_the_upload_until_the_last_attempt(handler):
    upload = handler.paths.uploads_dir / "u.csv"
    upload.write_bytes(b"id\n1\n")
    for attempt in (1, 2):
        with pytest.raises(Exception, match="API did not accept"):
            handler(job("u.csv", attempt))
        assert upload.exists()  # the job will run again and needs it
    with pytest.raises(Exception, match="API did not accept"):
        handler(job("u.csv", 3))
    assert not upload.exists()  # the job is dead now
