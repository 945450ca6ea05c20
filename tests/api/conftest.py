"""An API app in process over real SQLite files, and an in-process worker draining its queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from madbwpu_r.api.app import create_app
from madbwpu_r.api.state import ApiSettings
from madbwpu_r.worker.api_client import ApiClient
from madbwpu_r.worker.ingest import IngestHandler
from madbwpu_r.worker.runner import Worker

TOKENS = {"write_token": "w" * 32, "worker_token": "k" * 32, "purge_token": "p" * 32}


class ApiHarness:
    def __init__(self, tmp_path: Path):
        self.settings = ApiSettings(
            env="staging", data_dir=tmp_path, cache_dir=tmp_path / "cache", **TOKENS
        )
        self.app = create_app(self.settings)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.state = self.app.state.api
        worker_client = TestClient(self.app)
        self.handler = IngestHandler(
            self.state.blobs, ApiClient("", TOKENS["worker_token"], client=worker_client)
        )
        self.worker = Worker(
            self.state.queue,
            {"ingest": self.handler},
            ["ingest"],
            lease=5,
            name="test",
            install_signals=False,
        )

    def ingest(
        self, name: str, body: bytes, token: str | None = TOKENS["write_token"], **headers: str
    ):
        all_headers = {"Content-Type": "text/csv", **headers}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.client.post(f"/v1/datasets/{name}/ingest", content=body, headers=all_headers)

    def uploads(self) -> list[str]:
        """The uploads waiting in the environment's blob store."""
        return [b.key for b in self.state.blobs.list("uploads/")]

    def drain(self) -> None:
        """Run every ready job to its end in this thread, as a worker process would."""
        self.worker.run(burst=True)

    def ingest_and_run(self, name: str, body: bytes) -> dict:
        response = self.ingest(name, body)
        assert response.status_code == 202, response.text
        self.drain()
        return self.client.get(response.json()["status_url"]).json()


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[[], ApiHarness]]:
    made: list[ApiHarness] = []

    def make() -> ApiHarness:
        harness = ApiHarness(tmp_path)
        harness.client.__enter__()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.client.__exit__(None, None, None)


@pytest.fixture
def api(make_api) -> ApiHarness:
    return make_api()
