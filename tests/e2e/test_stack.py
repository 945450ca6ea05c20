"""The whole product as real processes: `madbwpu-r up`, then ingest and read through the edge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

CLI = [sys.executable, "-m", "madbwpu_r"]
REDIS = "redis://127.0.0.1:6379/0"


@contextmanager
def scaled_out_engines(
    data: Path, *, project_store: bool = False
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """`up`'s options for PostgreSQL + Redis + S3 (moto's server), and the AWS settings (with
    `project_store`, the project's store in PostgreSQL too); everything the run left on the
    servers is removed afterwards."""
    from madbwpu_r.audit.layout import PROJECT_STORE_ENV
    from madbwpu_r.launcher import project_id
    from tests.blobs.conftest import AWS_ENV, S3Server
    from tests.queue.queue_backends import PG_URL, drop_pg_schema, require_postgres, require_redis

    require_postgres()
    require_redis()
    tag = f"e2e{uuid.uuid4().hex[:8]}"
    s3 = S3Server().start()
    project = project_id(data)
    try:
        env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": s3.url}
        env.pop("AWS_PROFILE", None)
        if project_store:
            env[PROJECT_STORE_ENV] = f"{PG_URL}?schema={tag}_project"
        extra = [
            "--store-url",
            f"{PG_URL}?schema={tag}",
            "--queue-url",
            f"{REDIS}?prefix={tag}",
            "--blob-url",
            f"s3://{tag}/blobs?create=1",
            "--redis-url",
            REDIS,
        ]
        yield extra, env
    finally:
        s3.stop()
        for environment in ("staging", "production"):
            drop_pg_schema(f"{tag}_{project}_{environment}")
        drop_pg_schema(f"{tag}_project")
        import redis

        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=f"{{{tag}-*"):
            client.delete(key)
        client.close()


ROWS_ROUTE = 'route="/v1/datasets/{name}/rows"'


class Running:
    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        start_timeout: float = 150.0,
    ):
        self.data_dir = data_dir
        self.extra = extra
        self.env = env
        data_dir.parent.mkdir(parents=True, exist_ok=True)  # `up` makes DIR itself, 0700
        self.log = data_dir.parent / "up.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "up", "--data-dir", str(data_dir), "--max-workers", "2", *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                env=env,
            )
        deadline = time.monotonic() + start_timeout  # `up` itself gives up after 120 s
        endpoints = data_dir / "endpoints.json"
        before = endpoints.stat().st_mtime_ns if endpoints.exists() else None
        # `up` writes endpoints.json once every tier answers; a file from an earlier run is stale.
        while not endpoints.exists() or endpoints.stat().st_mtime_ns == before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"`up` did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        self.endpoints = orjson.loads(endpoints.read_bytes())
        # Each environment has its own tokens; `write` and `purge_token` are staging's.
        self.tokens = {
            env: orjson.loads((data_dir / env / "secrets.json").read_bytes())
            for env in self.endpoints
        }
        self.write = {"Authorization": f"Bearer {self.tokens['staging']['write_token']}"}
        self.purge_token = self.tokens["staging"]["purge_token"]
        self.http = httpx.Client(timeout=30)

    def ingest(self, env: str, name: str, body: bytes) -> dict:
        api = self.endpoints[env]["api"]
        write = {"Authorization": f"Bearer {self.tokens[env]['write_token']}"}
        accepted = self.http.post(
            f"{api}/v1/datasets/{name}/ingest",
            content=body,
            headers={**write, "Content-Type": "text/csv"},
        )
        assert accepted.status_code == 202, accepted.text
        status_url = accepted.json()["status_url"]
        assert status_url.startswith("/v1/jobs/")  # relative: no internal address given out
        deadline = time.monotonic() + 60
        while True:
            job = self.http.get(api + status_url).json()
            if job["status"] in ("succeeded", "failed"):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)

    def api_rows_requests(self, env: str) -> float:
        text = self.http.get(f"{self.endpoints[env]['api']}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("madbwpu_r_api_requests_total") and ROWS_ROUTE in line
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        finally:
            self.http.close()


@pytest.fixture(scope="module", params=["embedded", "scaled-out"])
def stack(request, tmp_path_factory) -> Iterator[Running]:
    """One running product per engine set for the module (start-up is the slow part); tests use
    their own datasets. The same checks run on the embedded default (SQLite and files) and
    scaled out (PostgreSQL, Redis, an S3-compatible server)."""
    data = tmp_path_factory.mktemp("e2e") / "data"
    if request.param == "embedded":
        running = Running(data)
        yield running
        running.stop()
        return
    with scaled_out_engines(data) as (extra, env):
        running = Running(data, *extra, env=env)
        yield running
        running.stop()


def test_endpoints_and_heartbeat(stack):
    assert set(stack.endpoints) == {"staging", "production"}
    tiers_of = {
        env: {k: tiers[k] for k in ("edge", "api")} for env, tiers in stack.endpoints.items()
    }
    urls = {url for tiers in tiers_of.values() for url in tiers.values()}
    assert len(urls) == 4 and all(u.startswith("http://127.0.0.1:") for u in urls)
    # Each environment's blob store is named too (the release pipeline copies between them).
    blobs = {tiers["blobs"] for tiers in stack.endpoints.values()}
    assert len(blobs) == 2 and all(b.startswith(("file://", "s3://")) for b in blobs)
    for env, tiers in tiers_of.items():
        for url in tiers.values():
            assert stack.http.get(f"{url}/healthz").status_code == 200
        beat = stack.http.get(f"{tiers['api']}/v1/heartbeat")
        assert beat.status_code == 200 and beat.json()["environment"] == env
        # The supervisor's one idle worker, counted by the presence it announces in the queue.
        deadline = time.monotonic() + 60
        while 'madbwpu_r_queue_workers{queue="ingest"} 1.0' not in (
            metrics := stack.http.get(f"{tiers['api']}/metrics").text
        ):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.2)
        # Through the edge, the heartbeat is never served from cache.
        for _ in range(2):
            through = stack.http.get(f"{tiers['edge']}/v1/heartbeat")
            assert through.status_code == 200
            assert through.headers.get("x-cache") != "HIT"


def test_ingest_read_through_edge_and_invalidate(stack):
    edge = stack.endpoints["staging"]["edge"]
    first = stack.ingest("staging", "people", b"id,name\n1,ann\n2,bob\n")
    assert first["status"] == "succeeded", first
    other = stack.ingest("staging", "places", b"id,city\n1,oslo\n")
    assert other["status"] == "succeeded", other

    miss = stack.http.get(f"{edge}/v1/datasets/people/rows")
    assert miss.status_code == 200 and miss.headers["x-cache"] == "MISS"
    assert miss.json()["rows"] == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
    assert "dataset:people" in miss.headers["surrogate-key"]
    assert stack.http.get(f"{edge}/v1/datasets/places/rows").headers["x-cache"] == "MISS"

    seen_by_api = stack.api_rows_requests("staging")
    hit = stack.http.get(f"{edge}/v1/datasets/people/rows")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.json() == miss.json()
    assert stack.api_rows_requests("staging") == seen_by_api  # the API never saw the hit

    second = stack.ingest("staging", "people", b"id,name\n1,ann\n2,bob\n3,cid\n")
    assert second["status"] == "succeeded" and second["version"] != first["version"]
    fresh = stack.http.get(f"{edge}/v1/datasets/people/rows")
    assert fresh.headers["x-cache"] == "MISS"
    assert fresh.json()["version"] == second["version"]
    assert [r["name"] for r in fresh.json()["rows"]] == ["ann", "bob", "cid"]
    # Only the changed dataset was purged.
    assert stack.http.get(f"{edge}/v1/datasets/places/rows").headers["x-cache"] == "HIT"

    # Production is a separate environment with its own data.
    production = stack.endpoints["production"]["edge"]
    assert stack.http.get(f"{production}/v1/datasets/people/rows").status_code == 404


def test_malformed_upload_fails_and_old_version_stays(stack):
    good = stack.ingest("staging", "kept", b"id,name\n1,ann\n")
    bad = stack.ingest("staging", "kept", b"id,name\n1,ann\n2\n")
    assert bad["status"] == "failed" and "line 3" in bad["error"]
    edge = stack.endpoints["staging"]["edge"]
    assert stack.http.get(f"{edge}/v1/datasets/kept/rows").json()["version"] == good["version"]


def test_purge_needs_the_credential(stack):
    edge = stack.endpoints["staging"]["edge"]
    stack.ingest("staging", "guarded", b"id\n1\n")
    stack.http.get(f"{edge}/v1/datasets/guarded/rows")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = stack.http.post(
            f"{edge}/_edge/purge", json={"keys": ["dataset:guarded"]}, headers=headers
        )
        assert refused.status_code in (401, 403)
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert stack.http.get(f"{edge}/v1/datasets/guarded/rows").headers["x-cache"] == "HIT"
    allowed = stack.http.post(
        f"{edge}/_edge/purge",
        json={"keys": ["dataset:guarded"]},
        headers={"Authorization": f"Bearer {stack.purge_token}"},
    )
    assert allowed.status_code == 200 and allowed.json()["purged"] >= 1
    assert stack.http.get(f"{edge}/v1/datasets/guarded/rows").headers["x-cache"] == "MISS"


def test_cli_ingest_and_restart_keeps_data(stack, tmp_path):
    csv = tmp_path / "cli.csv"
    csv.write_text("id,name\n1,ann\n")
    cli = [sys.executable, "-m", "madbwpu_r"]
    done = subprocess.run(
        cli
        + ["ingest", "from-cli", str(csv), "--env", "staging", "--data-dir", str(stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "now version" in done.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1\n")
    failed = subprocess.run(
        cli + ["ingest", "from-cli", str(bad), "--data-dir", str(stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1 and "line 2" in failed.stderr
    assert "Traceback" not in failed.stderr

    assert stack.stop() == 0
    again = Running(stack.data_dir, *stack.extra, env=stack.env)
    try:
        api = again.endpoints["staging"]["api"]
        assert again.endpoints == stack.endpoints  # the same ports, where they are free
        rows = again.http.get(f"{api}/v1/datasets/from-cli/rows").json()["rows"]
        assert rows == [{"id": 1, "name": "ann"}]
    finally:
        assert again.stop() == 0
