"""Purges as one edge applies them: auth, soft purges, the fill race, epochs, Redis reconnects.

The senders (HTTP fan-out, Redis pub/sub) are tested in tests/purge/.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.edge.conftest import TOKEN, redis_url_or_skip


def test_purge_by_url_and_soft_purge(origin, edge, uniq):
    path, key = f"{uniq}/u", f"{uniq}:u"
    origin.route(
        path,
        headers={"Cache-Control": "max-age=300, stale-while-revalidate=60", "Surrogate-Key": key},
    )
    edge.get(path)
    assert edge.purge(urls=[path]).json()["purged"] == 1
    assert edge.get(path).headers["x-cache"] == "MISS"
    # Soft: the entry is stale, so stale-while-revalidate still answers at once.
    assert edge.purge(keys=[key], soft=True).json()["purged"] == 1
    stale = edge.get(path)
    assert stale.headers["x-cache"] == "STALE"
    assert stale.text == f"body of {path} #2"
    _wait_for(lambda: origin.count(path) == 3)
    _wait_for(lambda: edge.get(path).text == f"body of {path} #3")


def test_purge_requires_the_token_and_changes_nothing_without_it(origin, edge, uniq):
    path = f"{uniq}/auth"
    key = f"{uniq}:k"
    origin.route(path, headers={"Cache-Control": "max-age=300", "Surrogate-Key": key})
    edge.get(path)
    purges = edge.stats()["purges"]
    for token, status in ((None, 401), ("wrong-token", 403)):
        response = edge.purge(token=token, keys=[key], urls=[path])
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status
    assert edge.get(path).headers["x-cache"] == "HIT"
    assert edge.stats()["purges"] == purges
    bad = edge.purge(keys="not-a-list")
    assert bad.status_code == 400 and bad.json()["title"] == "Bad Request"


def test_purge_during_a_slow_fill_never_lets_the_old_body_through(origin, edge, uniq):
    path = f"{uniq}/race"
    origin.route(
        path,
        delay=1.5,
        body="old",
        headers={"Cache-Control": "max-age=300", "Surrogate-Key": f"{uniq}:race"},
    )

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as client:
            slow = asyncio.create_task(client.get(edge.url + path))
            await _until(lambda: origin.stats(path)["count"] == 1)
            purge = await client.post(
                edge.url + "/_edge/purge",
                json={"keys": [f"{uniq}:race"]},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert purge.status_code == 200
            origin.route(
                path,
                body="new",
                headers={"Cache-Control": "max-age=300", "Surrogate-Key": f"{uniq}:race"},
            )
            # Arrives after the purge while the old fill is still in flight.
            after = await client.get(edge.url + path)
            return await slow, after

    slow, after = asyncio.run(scenario())
    assert slow.text == "old"  # it was asked before the purge
    assert after.text == "new"
    for _ in range(3):
        assert edge.get(path).text == "new"


def test_a_new_epoch_drops_the_cache(origin, make_edge, uniq):
    edge = make_edge(origin.url)
    path = f"{uniq}/epoch"
    edge.get(path)
    edge.get(path)
    assert edge.purge(keys=["x"], epoch="A", seq=1).json()["dropped"] == 0  # first publisher
    assert edge.purge(keys=["x"], epoch="A", seq=2).json()["dropped"] == 0
    assert edge.purge(keys=["x"], epoch="A", seq=2).json()["dropped"] == 0  # duplicate
    assert edge.get(path).headers["x-cache"] == "HIT"
    assert edge.purge(keys=["x"], epoch="B", seq=1).json()["dropped"] == 1  # a restart
    edge.get(path)
    assert edge.purge(keys=["x"], epoch="C", seq=5).json()["dropped"] == 1  # joined late


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.05)


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        await asyncio.sleep(0.02)


def test_a_redis_reconnect_drops_the_cache(origin, make_edge, uniq):
    import redis

    redis_url = redis_url_or_skip()
    name = f"reconnect-{uniq.rsplit('/', 1)[-1]}"
    edge = make_edge(
        origin.url, "--redis-url", redis_url, "--redis-channel", f"ch:{uniq}", name=name
    )
    _wait_for(lambda: edge.stats()["redis"]["connected"])
    path = f"{uniq}/kept"
    edge.get(path)
    assert edge.get(path).headers["x-cache"] == "HIT"
    admin = redis.Redis.from_url(redis_url)
    ids = [c["id"] for c in admin.client_list() if c.get("name") == f"madbwpu-r-edge:{name}"]
    assert ids
    for client_id in ids:
        admin.client_kill_filter(_id=client_id)
    admin.close()
    _wait_for(lambda: edge.stats()["drops"] == 1 and edge.stats()["redis"]["connected"])
    assert edge.get(path).headers["x-cache"] == "MISS"
