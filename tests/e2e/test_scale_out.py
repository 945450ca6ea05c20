"""`up` on the scale-out engines: metadata on PostgreSQL, jobs on Redis Streams, purges over
Redis pub/sub to 2 edges; an engine that is down is a clear start-up error."""

from __future__ import annotations

import os
import subprocess

import pytest
import redis

from madbwpu_r.launcher import project_id
from tests.e2e.test_stack import CLI, Running
from tests.queue.queue_backends import PG_URL, drop_pg_schema, require_postgres

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_server():
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield client
    client.close()


def test_up_on_postgres_and_redis_with_two_edges(tmp_path, redis_server):
    require_postgres()
    data = tmp_path / "data"
    schemas = [f"e2e_{project_id(data)}_{env}" for env in ("staging", "production")]
    stack = Running(
        data,
        "--edges",
        "2",
        "--queue-url",
        f"{REDIS}?prefix=e2e-test",
        "--store-url",
        f"{PG_URL}?schema=e2e",
        "--redis-url",
        REDIS,
    )
    try:
        edges = stack.endpoints["staging"]["edges"]
        assert len(edges) == 2 and stack.endpoints["staging"]["edge"] == edges[0]
        first = stack.ingest("staging", "people", b"id,name\n1,ann\n")
        assert first["status"] == "succeeded", first
        for edge in edges:
            assert stack.http.get(f"{edge}/v1/datasets/people/rows").headers["x-cache"] == "MISS"
            assert stack.http.get(f"{edge}/v1/datasets/people/rows").headers["x-cache"] == "HIT"
        # The job went through Redis, under this project's and environment's own prefix.
        assert any(b"-staging" in key for key in redis_server.scan_iter(match="{e2e-test-*"))
        # The metadata went to PostgreSQL, in this environment's own schema; none is on disk.
        import psycopg

        with psycopg.connect(PG_URL) as conn:
            (count,) = conn.execute(f'SELECT count(*) FROM "{schemas[0]}".versions').fetchone()
        assert count == 1
        assert not (data / "staging" / "state.sqlite").exists()

        second = stack.ingest("staging", "people", b"id,name\n1,ann\n2,bob\n")
        assert second["status"] == "succeeded", second
        for edge in edges:
            fresh = stack.http.get(f"{edge}/v1/datasets/people/rows")
            assert fresh.headers["x-cache"] == "MISS"
            assert fresh.json()["version"] == second["version"]
    finally:
        assert stack.stop() == 0
        for key in redis_server.scan_iter(match="{e2e-test-*"):
            redis_server.delete(key)
        for schema in schemas:
            drop_pg_schema(schema)


@pytest.mark.parametrize(
    ("option", "url", "engine"),
    [
        ("--store-url", "postgresql://postgres@127.0.0.1:9/test?pool_timeout=1", "metadata store"),
        ("--queue-url", "redis://127.0.0.1:9/0", "job queue"),
    ],
)
def test_an_engine_that_is_down_is_a_clear_start_up_error(tmp_path, option, url, engine):
    result = subprocess.run(
        [*CLI, "up", "--data-dir", str(tmp_path / "data"), option, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"the {engine} is not available" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
