"""Concurrent misses collapse into one origin request; uncacheable responses do not serialise."""

from __future__ import annotations

import asyncio

import httpx


async def _burst(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=n)) as client:
        return list(await asyncio.gather(*(client.get(url) for _ in range(n))))


def test_twenty_cold_requests_make_one_origin_request(origin, edge, uniq):
    path = f"{uniq}/slow"
    origin.route(path, delay=0.5, headers={"Cache-Control": "max-age=60"})
    responses = asyncio.run(_burst(edge.url + path, 20))
    assert origin.count(path) == 1
    assert {r.status_code for r in responses} == {200}
    assert {r.text for r in responses} == {f"body of {path} #1"}
    caches = sorted(r.headers["x-cache"] for r in responses)
    assert caches.count("MISS") == 1
    assert set(caches) <= {"MISS", "COALESCED", "HIT"}
    assert edge.stats()["coalesced"] >= 1


def test_uncacheable_releases_waiters_and_later_requests_run_in_parallel(origin, edge, uniq):
    path = f"{uniq}/private"
    origin.route(path, delay=0.4, headers={"Cache-Control": "private"})
    first = asyncio.run(_burst(edge.url + path, 10))
    assert {r.status_code for r in first} == {200}
    # Every request reached the origin: the private answer was not shared among waiters.
    assert origin.count(path) == 10
    assert {r.headers["x-cache"] for r in first} == {"PASS"}
    # Hit-for-pass: the next burst is not coalesced behind one request, all run at once.
    second = asyncio.run(_burst(edge.url + path, 10))
    assert origin.count(path) == 20
    assert len({r.text for r in second}) == 10
    assert origin.stats(path)["max_inflight"] >= 2  # serialised requests would never overlap


def test_large_bodies_are_streamed_and_not_cached(origin, make_edge, uniq):
    edge = make_edge(origin.url, "--max-bytes", "1MiB", "--max-object-bytes", "16KiB")
    path = f"{uniq}/big"
    origin.route(path, size=100_000, headers={"Cache-Control": "max-age=60"})
    for _ in range(2):
        response = edge.get(path)
        assert response.status_code == 200
        assert len(response.content) == 100_000
        assert response.headers["x-cache"] == "PASS"
    assert origin.count(path) == 2
    assert edge.stats()["entries"] == 0
