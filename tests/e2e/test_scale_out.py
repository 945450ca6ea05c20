"""`up` on the scale-out engines: jobs on Redis Streams, purges over Redis pub/sub to 2 edges."""

from __future__ import annotations

import os

import pytest
import redis

from tests.e2e.test_stack import Running

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


def test_up_on_redis_with_two_edges(tmp_path, redis_server):
    stack = Running(
        tmp_path / "data",
        "--edges",
        "2",
        "--queue-url",
        f"{REDIS}?prefix=e2e-test",
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
