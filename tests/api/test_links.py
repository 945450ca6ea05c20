"""Links the API gives out never carry the address it was reached by (issue 7, item 7)."""

from __future__ import annotations

from starlette.testclient import TestClient

from madbwpu_r.api.app import create_app
from madbwpu_r.api.state import ApiSettings
from tests.api.conftest import TOKENS


def test_a_trailing_slash_is_a_404_problem_not_a_redirect_to_our_host(api):
    for path in ("/v1/datasets/q/rows/", "/v1/datasets/", "/v1/heartbeat/"):
        answer = api.client.get(path, follow_redirects=False, headers={"Host": "10.0.0.7:8123"})
        assert answer.status_code == 404, path
        assert "location" not in answer.headers
        assert answer.headers["content-type"] == "application/problem+json"
        assert "10.0.0.7" not in answer.text


def test_status_url_and_location_are_relative(api):
    accepted = api.ingest("linked", b"id\n1\n", Host="10.0.0.7:8123")
    assert accepted.status_code == 202
    assert accepted.json()["status_url"] == f"/v1/jobs/{accepted.json()['job_id']}"
    assert accepted.headers["location"] == accepted.json()["status_url"]


def test_with_a_public_url_links_are_built_on_it(tmp_path):
    settings = ApiSettings(
        env="staging", data_dir=tmp_path, public_url="https://data.example", **TOKENS
    )
    with TestClient(create_app(settings)) as client:
        accepted = client.post(
            "/v1/datasets/x/ingest",
            content=b"id\n1\n",
            headers={
                "Content-Type": "text/csv",
                "Authorization": f"Bearer {TOKENS['write_token']}",
            },
        )
    assert accepted.json()["status_url"].startswith("https://data.example/v1/jobs/")
