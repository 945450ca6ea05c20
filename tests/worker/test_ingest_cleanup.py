"""A dead ingest job leaves no upload behind; a job that will be retried keeps its upload.

(An invalid file, which fails at once, is covered against real processes in
tests/e2e/test_security.py.)
"""

from __future__ import annotations

import socket

import pytest

from madbwpu_r.blobs import open_blobs
from madbwpu_r.catalog import upload_key
from madbwpu_r.queue import Job
from madbwpu_r.worker.api_client import ApiClient
from madbwpu_r.worker.ingest import IngestHandler


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def handler(tmp_path):
    blobs = open_blobs((tmp_path / "blobs").as_uri())
    # A real client to an API that is not there: every event fails as a transient fault.
    client = ApiClient(f"http://127.0.0.1:{closed_port()}", "token", attempts=1)
    yield IngestHandler(blobs, client)
    client.close()
    blobs.close()


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
    key = upload_key("u.csv")
    handler.blobs.put(key, b"id\n1\n")
    for attempt in (1, 2):
        with pytest.raises(Exception, match="API did not accept"):
            handler(job("u.csv", attempt))
        assert handler.blobs.exists(key)  # the job will run again and needs it
    with pytest.raises(Exception, match="API did not accept"):
        handler(job("u.csv", 3))
    assert not handler.blobs.exists(key)  # the job is dead now
