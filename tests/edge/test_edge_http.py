"""HTTP caching semantics through real edge and origin processes."""

from __future__ import annotations

import asyncio

import httpx

from tests.edge.conftest import AUTH
from tests.edge.test_edge_purge import _wait_for


def test_vary_keeps_one_variant_per_request_header_value(origin, edge, uniq):
    path = f"{uniq}/vary"
    origin.route(
        path,
        echo="accept-language",
        headers={"Cache-Control": "max-age=300", "Vary": "Accept-Language"},
    )
    en = edge.get(path, headers={"Accept-Language": "en"})
    fr = edge.get(path, headers={"Accept-Language": "fr"})
    assert (en.headers["x-cache"], fr.headers["x-cache"]) == ("MISS", "MISS")
    for lang in ("en", "fr", "en"):
        again = edge.get(path, headers={"Accept-Language": lang})
        assert again.headers["x-cache"] == "HIT"
        assert again.text.endswith(" " + lang)
    assert origin.count(path) == 2
    assert edge.get(path).headers["x-cache"] == "MISS"  # no Accept-Language: its own variant


def test_origin_304_updates_the_stored_headers(origin, edge, uniq):
    path = f"{uniq}/etag"
    origin.route(
        path,
        honour_conditionals=True,
        body="payload",
        headers={"Cache-Control": "max-age=0", "ETag": '"v1"', "X-Version": "1"},
    )
    assert edge.get(path).headers["x-cache"] == "MISS"
    origin.route(
        path,
        honour_conditionals=True,
        body="changed-but-304",
        headers={"Cache-Control": "max-age=300", "ETag": '"v1"', "X-Version": "2"},
    )
    revalidated = edge.get(path)
    assert revalidated.status_code == 200
    assert revalidated.text == "payload"  # body from the cache
    assert revalidated.headers["x-version"] == "2"  # headers from the 304
    assert revalidated.headers["x-cache"] == "REVALIDATED"
    assert origin.stats(path)["last_headers"]["if-none-match"] == '"v1"'
    hit = edge.get(path)
    assert (hit.headers["x-cache"], hit.headers["x-version"], hit.text) == ("HIT", "2", "payload")
    assert hit.headers["cache-control"] == "max-age=300"
    assert origin.count(path) == 2


def test_client_conditional_requests_get_304_from_the_cache(origin, edge, uniq):
    path = f"{uniq}/cond"
    origin.route(
        path,
        headers={
            "Cache-Control": "max-age=300",
            "ETag": 'W/"abc"',
            "Last-Modified": "Tue, 01 Jan 2030 00:00:00 GMT",
        },
    )
    edge.get(path)
    not_modified = edge.get(path, headers={"If-None-Match": '"abc"'})
    assert not_modified.status_code == 304
    assert not_modified.headers["x-cache"] == "HIT"
    assert not_modified.headers["etag"] == 'W/"abc"'
    assert not_modified.content == b""
    assert edge.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    since = edge.get(path, headers={"If-Modified-Since": "Wed, 02 Jan 2030 00:00:00 GMT"})
    assert since.status_code == 304
    assert origin.count(path) == 1


def test_stale_if_error_serves_stale_when_the_origin_is_killed(make_origin, make_edge, uniq):
    origin = make_origin()
    edge = make_edge(origin.url)
    origin.route("/sie", body="kept", headers={"Cache-Control": "max-age=0, stale-if-error=300"})
    origin.route("/plain", headers={"Cache-Control": "max-age=0"})
    origin.route(
        "/strict", headers={"Cache-Control": "max-age=0, must-revalidate, stale-if-error=300"}
    )
    for path in ("/sie", "/plain", "/strict"):
        assert edge.get(path).status_code == 200
    origin.kill()
    stale = edge.get("/sie")
    assert (stale.status_code, stale.text, stale.headers["x-cache"]) == (200, "kept", "STALE")
    down = edge.get("/plain")
    assert down.status_code == 502
    assert down.headers["content-type"] == "application/problem+json"
    assert edge.get("/strict").status_code == 504  # must-revalidate forbids stale
    assert edge.stats()["origin_errors"] >= 3


def test_stale_if_error_on_origin_5xx(origin, edge, uniq):
    path = f"{uniq}/sie5xx"
    origin.route(path, body="good", headers={"Cache-Control": "max-age=0, stale-if-error=300"})
    edge.get(path)
    origin.route(path, status=503, body="down", headers={"Cache-Control": "no-store"})
    stale = edge.get(path)
    assert (stale.status_code, stale.text, stale.headers["x-cache"]) == (200, "good", "STALE")


def test_stale_while_revalidate_refreshes_exactly_once(origin, edge, uniq):
    path = f"{uniq}/swr"
    origin.route(path, headers={"Cache-Control": "max-age=0, stale-while-revalidate=300"})
    edge.get(path)  # stored, and stale at once
    origin.route(
        path, delay=2.0, headers={"Cache-Control": "max-age=300, stale-while-revalidate=300"}
    )

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            return list(await asyncio.gather(*(client.get(edge.url + path) for _ in range(10))))

    responses = asyncio.run(burst())
    assert {r.headers["x-cache"] for r in responses} == {"STALE"}
    assert {r.text for r in responses} == {f"body of {path} #1"}
    _wait_for(lambda: edge.get(path).headers["x-cache"] == "HIT")
    assert origin.count(path) == 2
    assert edge.get(path).text == f"body of {path} #2"


def test_byte_limit_evicts_and_is_never_exceeded(origin, make_edge, uniq):
    edge = make_edge(origin.url, "--max-bytes", "64KiB", "--max-object-bytes", "8KiB")
    paths = [f"{uniq}/obj{i}" for i in range(40)]
    for path in paths:
        origin.route(path, size=4000, headers={"Cache-Control": "max-age=300"})
        assert len(edge.get(path).content) == 4000
        stats = edge.stats()
        assert stats["bytes"] <= stats["max_bytes"] == 64 * 1024
    assert stats["evictions"] > 0
    assert stats["entries"] < 40
    assert edge.get(paths[-1]).headers["x-cache"] == "HIT"
    assert edge.get(paths[0]).headers["x-cache"] == "MISS"  # least recently used went first
    metrics = httpx.get(edge.url + "/metrics", headers=AUTH).text
    assert 'madbwpu_edge_evictions_total{edge="edge"}' in metrics


def test_head_uses_the_stored_get_and_unsafe_methods_invalidate(origin, edge, uniq):
    path, other = f"{uniq}/res", f"{uniq}/other"
    origin.route(path, headers={"Cache-Control": "max-age=300"})
    origin.route(other, headers={"Cache-Control": "max-age=300", "Location": other})
    invalidations = edge.stats()["invalidations"]
    head_miss = httpx.head(edge.url + path)
    assert head_miss.headers["x-cache"] == "PASS"
    assert origin.stats(path)["methods"] == ["HEAD"]
    edge.get(path), edge.get(other)
    head = httpx.head(edge.url + path)
    assert head.status_code == 200 and head.headers["x-cache"] == "HIT"
    assert int(head.headers["content-length"]) == len(f"body of {path} #2")
    # POST to `other` answers with Location: path -> both are invalidated.
    origin.route(other, headers={"Location": path, "Cache-Control": "no-store"})
    assert httpx.post(edge.url + other, content=b"x").status_code == 200
    assert edge.get(path).headers["x-cache"] == "MISS"
    assert edge.get(other).headers["x-cache"] != "HIT"
    assert edge.stats()["invalidations"] == invalidations + 2


def test_age_includes_the_origins_age(origin, edge, uniq):
    path = f"{uniq}/age"
    origin.route(path, headers={"Cache-Control": "max-age=300", "Age": "100"})
    assert int(edge.get(path).headers["age"]) >= 100
    assert int(edge.get(path).headers["age"]) >= 100


def test_stats_and_health(edge):
    assert httpx.get(edge.url + "/healthz").json()["status"] == "ok"
    stats = edge.stats()
    for key in ("hits", "misses", "coalesced", "stale", "purges", "evictions", "bytes", "entries"):
        assert key in stats
