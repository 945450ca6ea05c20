"""One queue suite, run against every backend (STYLE.md point 3).

A missing Redis/PostgreSQL server skips locally and fails when env CI is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from madbwpu_r.queue import Queue, open_queue

BACKENDS = ["sqlite", "redis", "postgres"]
REDIS_URL = "redis://127.0.0.1:6379/15"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis is not running on 127.0.0.1:6379")


def require_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=2).close()
    except psycopg.Error:
        if os.environ.get("CI"):
            raise
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")


def drop_pg_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def base_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/state.sqlite"
    elif backend == "redis":
        require_redis()
        prefix = f"t{uuid.uuid4().hex[:12]}"
        yield f"{REDIS_URL}?prefix={prefix}"
        drop_redis_prefix(prefix)
    elif backend == "postgres":
        require_postgres()
        schema = f"t{uuid.uuid4().hex[:12]}"
        yield f"{PG_URL}?schema={schema}"
        drop_pg_schema(schema)
    else:  # pragma: no cover
        raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def queue_url(backend: str, tmp_path: Path) -> Iterator[str]:
    yield from base_url(backend, tmp_path)


@pytest.fixture
def make_queue(queue_url: str) -> Iterator[Callable[..., Queue]]:
    """Factory: make_queue(lease=0.5, backoff=0.05, max_attempts=3) -> an open queue."""
    opened: list[Queue] = []

    def make(**options: object) -> Queue:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        sep = "&" if "?" in queue_url else "?"
        q = open_queue(queue_url + (sep + query if query else ""))
        opened.append(q)
        return q

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def q(make_queue: Callable[..., Queue]) -> Queue:
    return make_queue(lease=0.5, backoff=0.05, backoff_max=0.1, max_attempts=3)
