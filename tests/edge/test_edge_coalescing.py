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


async def _raw_burst(url: str, path: str, headers: list[str]) -> list[tuple[bytes, bytes]]:
    """One keep-alive connection per request, all written at once: (head, body) each."""
    host, port = url.removeprefix("http://").split(":")
    conns = [await asyncio.open_connection(host, int(port)) for _ in headers]

    async def one(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], extra: str):
        reader, writer = conn
        writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n{extra}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        writer.close()
        return head, body

    return list(await asyncio.gather(*(one(c, h) for c, h in zip(conns, headers, strict=True))))


def test_waiters_are_answered_by_the_protocol_with_the_fills_response(origin, make_edge, uniq):
    edge = make_edge(origin.url)
    path = f"{uniq}/burst"
    origin.route(path, delay=0.5, headers={"Cache-Control": "max-age=60"})
    responses = asyncio.run(_raw_burst(edge.url, path, [""] * 20))
    assert origin.count(path) == 1
    assert {body for _, body in responses} == {f"body of {path} #1".encode()}
    caches = sorted(head.split(b"x-cache: ")[1].split(b"\r\n")[0] for head, _ in responses)
    assert caches == [b"COALESCED"] * 19 + [b"MISS"]
    stats = edge.stats()
    assert stats["coalesced"] == stats["coalesced_direct"] == 19
    # The same connections keep working after a protocol-written response.
    assert edge.get(path).headers["x-cache"] == "HIT"


def test_waiters_of_another_variant_fall_back_to_the_full_rules(origin, make_edge, uniq):
    edge = make_edge(origin.url)
    path = f"{uniq}/vary"
    origin.route(
        path,
        delay=0.5,
        echo="accept-language",
        headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"},
    )
    langs = ["Accept-Language: en\r\n"] * 3 + ["Accept-Language: fr\r\n"] * 3
    responses = asyncio.run(_raw_burst(edge.url, path, langs))
    bodies = [body.decode() for _, body in responses]
    assert [b.split()[-1] for b in bodies] == ["en"] * 3 + ["fr"] * 3
    assert origin.count(path) == 2  # the French waiters coalesce on a fill of their own
    assert edge.stats()["coalesced_direct"] >= 2
