"""Where each backend's real server lives, and how a test gets a private namespace on it.

A missing Redis/PostgreSQL server skips locally and fails when env CI is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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
