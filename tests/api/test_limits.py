"""Bodies the API reads are bounded, and refused as soon as they are over (issue 7, item 1)."""

from __future__ import annotations

from madbwpu_r.api.jobs import MAX_EVENT_BYTES
from tests.api.conftest import TOKENS


def test_a_worker_event_over_its_limit_is_a_413(api):
    accepted = api.ingest("evented", b"id\n1\n")
    url = f"/v1/internal/jobs/{accepted.json()['job_id']}/events"
    worker = {"Authorization": f"Bearer {TOKENS['worker_token']}"}
    big = b'{"kind": "progress", "attempt": 1, "message": "' + b"x" * MAX_EVENT_BYTES + b'"}'
    refused = api.client.post(url, content=big, headers=worker)
    assert refused.status_code == 413
    assert refused.headers["content-type"] == "application/problem+json"
    chunked = api.client.post(url, content=iter([big[:1000], big[1000:]]), headers=worker)
    assert chunked.status_code == 413
    fine = api.client.post(url, json={"kind": "progress", "attempt": 1}, headers=worker)
    assert fine.status_code == 200


def test_an_upload_over_the_limit_is_a_413_and_leaves_nothing(make_api):
    api = make_api()
    api.settings.max_upload_bytes = 100
    refused = api.ingest("big", b"id\n" + b"1\n" * 100)
    assert refused.status_code == 413
    assert "100 bytes" in refused.json()["detail"]
    assert list(api.settings.paths.uploads_dir.iterdir()) == []
    assert api.client.get("/v1/datasets/big").status_code == 404
