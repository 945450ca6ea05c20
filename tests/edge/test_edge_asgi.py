"""The edge app in process (httpx over ASGI, the test origin in process too): request rules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import httpx

from madbwpu_r.edge import EdgeConfig, create_app
from madbwpu_r.edge.rules import http_date
from tests.edge import origin_app

Scenario = Callable[[httpx.AsyncClient, str], Awaitable[None]]


def run(scenario: Scenario, **config) -> None:
    async def main() -> None:
        edge = create_app(
            EdgeConfig(origin="http://origin.test", purge_token="t", **config),
            transport=httpx.ASGITransport(app=origin_app.app),
        )
        transport = httpx.ASGITransport(app=edge, client=("10.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as client:
            await scenario(client, f"/p/{uuid.uuid4().hex[:10]}")
        await edge.shutdown()

    asyncio.run(main())


def route(path: str, **config) -> None:
    origin_app.ROUTES[path] = config


def test_hit_miss_and_head_through_the_asgi_path():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(path, headers={"Cache-Control": "max-age=60"})
        first, second = await client.get(path), await client.get(path)
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert first.text == second.text == f"body of {path} #1"
        assert "age" in second.headers
        head = await client.head(path)
        assert head.headers["x-cache"] == "HIT" and head.content == b""
        forwarded = origin_app.LAST_HEADERS[path]
        assert forwarded["host"] == "origin.test"
        assert forwarded["x-forwarded-for"] == "10.0.0.1"
        assert "if-none-match" not in forwarded
        assert forwarded["via"] == "1.1 madbwpu-r-edge"

    run(scenario)


def test_request_directives():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(path, headers={"Cache-Control": "max-age=60"})
        await client.get(path)
        assert (await client.get(path, headers={"Cache-Control": "no-cache"})).headers[
            "x-cache"
        ] == "MISS"
        assert (await client.get(path, headers={"Pragma": "no-cache"})).headers["x-cache"] == "MISS"
        assert (await client.get(path, headers={"Cache-Control": "max-age=1000"})).headers[
            "x-cache"
        ] == "HIT"
        assert (await client.get(path, headers={"Cache-Control": "min-fresh=120"})).headers[
            "x-cache"
        ] == "MISS"
        missing = await client.get(path + "/none", headers={"Cache-Control": "only-if-cached"})
        assert missing.status_code == 504
        no_store = await client.get(path + "/ns", headers={"Cache-Control": "no-store"})
        assert no_store.headers["x-cache"] == "PASS"
        assert (await client.get(path + "/ns")).headers["x-cache"] == "MISS"

    run(scenario)


def test_fields_named_by_private_reach_the_requester_only():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(
            path,
            headers={
                "Cache-Control": 'max-age=60, private="Set-Cookie"',
                "Set-Cookie": "session=abc",
            },
        )
        first = await client.get(path)
        assert first.headers["x-cache"] == "MISS" and first.headers["set-cookie"] == "session=abc"
        second = await client.get(path)
        assert second.headers["x-cache"] == "HIT" and "set-cookie" not in second.headers

    run(scenario)


def test_unsafe_methods_pass_through_and_invalidate():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(path, headers={"Cache-Control": "max-age=60"})
        await client.get(path)
        posted = await client.post(path)
        assert posted.headers["x-cache"] == "PASS"
        assert origin_app.LAST_HEADERS[path]["content-length"] == "0"
        assert (await client.get(path)).headers["x-cache"] == "MISS"
        await client.options(path)
        assert (await client.get(path)).headers["x-cache"] == "HIT"  # OPTIONS is safe

    run(scenario)


def test_ranges_are_served_from_the_stored_response():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(path, body="0123456789", headers={"Cache-Control": "max-age=60", "ETag": '"e"'})
        first = await client.get(path, headers={"Range": "bytes=2-4"})
        assert (first.status_code, first.text) == (206, "234")
        assert first.headers["content-range"] == "bytes 2-4/10"
        assert "range" not in origin_app.LAST_HEADERS[path]  # the fill fetched it all
        hit = await client.get(path, headers={"Range": "bytes=-2"})
        assert (hit.status_code, hit.text, hit.headers["x-cache"]) == (206, "89", "HIT")
        stale_validator = await client.get(path, headers={"Range": "bytes=0-0", "If-Range": '"x"'})
        assert (stale_validator.status_code, stale_validator.text) == (200, "0123456789")
        beyond = await client.get(path, headers={"Range": "bytes=20-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */10"
        assert origin_app.COUNTS[path] == 1

    run(scenario)


def test_max_stale_serves_stale_unless_forbidden():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(path, headers={"Cache-Control": "max-age=0"})
        route(path + "/mr", headers={"Cache-Control": "max-age=0, must-revalidate"})
        await client.get(path), await client.get(path + "/mr")
        stale = await client.get(path, headers={"Cache-Control": "max-stale=60"})
        assert stale.headers["x-cache"] == "STALE"
        strict = await client.get(path + "/mr", headers={"Cache-Control": "max-stale"})
        assert strict.headers["x-cache"] == "MISS"

    run(scenario)


def test_authorization_private_no_store_and_heuristics():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        auth = {"Authorization": "Bearer user"}
        route(path + "/a", headers={"Cache-Control": "max-age=60"})
        route(path + "/pub", headers={"Cache-Control": "public, max-age=60"})
        route(path + "/priv", headers={"Cache-Control": "private, max-age=60"})
        route(path + "/ns", headers={"Cache-Control": "no-store"})
        route(path + "/lm", headers={"Last-Modified": http_date(0)})
        route(path + "/none", headers={})
        await client.get(path + "/a", headers=auth)
        assert (await client.get(path + "/a", headers=auth)).headers["x-cache"] != "HIT"
        await client.get(path + "/pub", headers=auth)
        assert (await client.get(path + "/pub", headers=auth)).headers["x-cache"] == "HIT"
        for suffix in ("/priv", "/ns"):
            await client.get(path + suffix)
            assert (await client.get(path + suffix)).headers["x-cache"] == "PASS"
        await client.get(path + "/lm")
        assert (await client.get(path + "/lm")).headers["x-cache"] == "HIT"
        await client.get(path + "/none")
        assert (await client.get(path + "/none")).headers["x-cache"] != "HIT"

    run(scenario)


def test_coalescing_in_process_and_the_purge_race():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(
            path,
            delay=0.3,
            body="old",
            headers={"Cache-Control": "max-age=60", "Surrogate-Key": "tag-" + path},
        )
        responses = await asyncio.gather(*(client.get(path) for _ in range(20)))
        assert origin_app.COUNTS[path] == 1
        assert {r.text for r in responses} == {"old"}
        # Soft purge: stale now; without stale-while-revalidate the next request refetches.
        purge = await client.post(
            "/_edge/purge",
            json={"keys": ["tag-" + path], "soft": True},
            headers={"Authorization": "Bearer t"},
        )
        assert purge.json()["purged"] == 1
        route(
            path,
            delay=0.3,
            body="new",
            headers={"Cache-Control": "max-age=60", "Surrogate-Key": "tag-" + path},
        )
        slow = asyncio.ensure_future(client.get(path))
        while origin_app.COUNTS[path] < 2:
            await asyncio.sleep(0.01)
        await client.post(
            "/_edge/purge", json={"urls": [path]}, headers={"Authorization": "Bearer t"}
        )
        route(path, body="newest", headers={"Cache-Control": "max-age=60"})
        assert (await client.get(path)).text == "newest"
        assert (await slow).text == "new"
        assert (await client.get(path)).text == "newest"

    run(scenario)


def test_admin_endpoints():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        assert (await client.get("/healthz")).json() == {"status": "ok", "edge": "edge"}
        assert (await client.get("/_edge/purge")).status_code == 405
        assert (await client.get("/_edge/nothing")).status_code == 404
        assert (
            await client.post(
                "/_edge/purge", content=b"{not json", headers={"Authorization": "Bearer t"}
            )
        ).status_code == 400
        metrics = (await client.get("/metrics", headers={"Authorization": "Bearer t"})).text
        assert "madbwpu_edge_hits_total" in metrics and "madbwpu_edge_bytes" in metrics
        stats = (await client.get("/_edge/stats", headers={"Authorization": "Bearer t"})).json()
        assert stats["max_bytes"] == 1234567

    run(scenario, max_bytes=1234567)


def test_no_purge_token_means_purges_are_refused():
    async def main() -> None:
        edge = create_app(EdgeConfig(origin="http://origin.test"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=edge), base_url="http://e"
        ) as client:
            refused = await client.post(
                "/_edge/purge", json={"keys": ["a"]}, headers={"Authorization": "Bearer "}
            )
            assert refused.status_code == 403
            assert "no purge token" in refused.json()["detail"]

    asyncio.run(main())


def test_exported_names():
    import madbwpu_r.edge as edge

    assert sorted(edge.__all__) == ["EdgeApp", "EdgeConfig", "create_app"]
    assert edge.EdgeConfig is EdgeConfig and edge.create_app is create_app


def test_forwarding_fields_are_replaced_never_appended():
    """Issue 7.6: a client's own X-Forwarded-* / Forwarded never reach the origin."""

    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        route(path, headers={"Cache-Control": "max-age=60"})
        spoofed = {
            "X-Forwarded-For": "6.6.6.6, 7.7.7.7",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Port": "443",
            "X-Forwarded-Prefix": "/evil",
            "X-Real-IP": "6.6.6.6",
            "Forwarded": "for=6.6.6.6;host=evil.example;proto=https",
            "Via": "1.1 client-proxy",
            "Expect": "100-continue",
        }
        assert (await client.post(path, content=b"x", headers=spoofed)).status_code == 200
        seen = origin_app.LAST_HEADERS[path]
        assert seen["x-forwarded-for"] == "10.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["forwarded"] == "for=10.0.0.1;proto=http"
        for name in ("x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix", "x-real-ip"):
            assert name not in seen, name
        assert "expect" not in seen
        assert seen["via"] == "1.1 client-proxy, 1.1 madbwpu-r-edge"  # Via is a chain by design
        assert seen["host"] == "origin.test"
        # A fill (GET miss) is forwarded the same way.
        await client.get(path + "/fill", headers=spoofed)
        assert origin_app.LAST_HEADERS[path + "/fill"]["x-forwarded-for"] == "10.0.0.1"

    run(scenario)


def test_forwarded_host_is_the_configured_public_name():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        await client.get(path, headers={"X-Forwarded-Host": "evil.example"})
        seen = origin_app.LAST_HEADERS[path]
        assert seen["x-forwarded-host"] == "data.example.org"
        assert seen["forwarded"] == 'for=10.0.0.1;proto=http;host="data.example.org"'

    run(scenario, forwarded_host="data.example.org")


def test_internals_need_a_token():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        for endpoint in ("/_edge/stats",):
            refused = await client.get(endpoint)
            assert refused.status_code == 401
            assert "origin.test" not in refused.text
            admin = await client.get(endpoint, headers={"Authorization": "Bearer adm"})
            assert admin.status_code == 200
        assert (
            "origin.test"
            in (await client.get("/_edge/stats", headers={"Authorization": "Bearer t"})).text
        )

    run(scenario, admin_token="adm")


def test_a_body_over_the_limit_gets_413_before_the_origin_sees_it():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        refused = await client.post(path, content=b"z" * 2048)
        assert refused.status_code == 413
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["connection"] == "close"

        async def chunks():
            for _ in range(4):
                yield b"z" * 1000

        streamed = await client.post(path, content=chunks())
        assert streamed.status_code == 413
        assert path not in origin_app.COUNTS
        ok = await client.post(path, content=b"z" * 1024)
        assert ok.status_code == 200 and origin_app.BODIES[path]["bytes"] == 1024

    run(scenario, max_body_bytes=1024)
