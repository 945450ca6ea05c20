"""The edge's own parsing rules (issue 7), from the RFCs' own examples.

HTTP-dates only in RFC 9110 5.6.7's three formats; an invalid Expires is already expired
(RFC 9111 5.3); an invalid Age is ignored (RFC 9111 5.1); interim 1xx responses are never
stored; targeted cache control (RFC 9213) takes precedence over Cache-Control for the edge.
"""

from __future__ import annotations

import asyncio
import calendar
import uuid

import httpx
import pytest

from madbwpu_r.edge import EdgeConfig, create_app
from madbwpu_r.edge.rules import (
    freshness_lifetime,
    parse_cache_control,
    parse_http_date,
    response_policy,
    targeted_directives,
)
from tests.edge import origin_app

NOV_6_1994 = 784111777.0  # RFC 9110 5.6.7's example instant
NOW = float(calendar.timegm((2026, 6, 1, 0, 0, 0)))


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  # ANSI C's asctime() format
    ],
)
def test_the_three_http_date_formats_of_rfc_9110(value):
    assert parse_http_date(value, now=NOW) == NOV_6_1994


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "-1",
        "Sun, 06 Nov 1994 08:49:37 +0000",  # a numeric zone is not GMT
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "sun, 06 nov 1994 08:49:37 gmt",  # HTTP-date is case-sensitive
        "Sun, 6 Nov 1994 08:49:37 GMT",  # day is 2DIGIT
        "06 Nov 1994 08:49:37 GMT",  # no day name
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  # two fields joined
        "",
    ],
)
def test_anything_else_is_not_an_http_date(value):
    assert parse_http_date(value, now=NOW) is None


def test_rfc_850_years_more_than_50_years_ahead_are_in_the_past():
    assert parse_http_date("Friday, 01-Jan-76 00:00:00 GMT", now=NOW) == calendar.timegm(
        (2076, 1, 1, 0, 0, 0)
    )
    assert parse_http_date("Saturday, 01-Jan-77 00:00:00 GMT", now=NOW) == calendar.timegm(
        (1977, 1, 1, 0, 0, 0)
    )


def _fields(**headers: str) -> dict[bytes, bytes]:
    return {k.replace("_", "-").lower().encode(): v.encode() for k, v in headers.items()}


def test_an_invalid_expires_means_already_expired():
    date = "Sun, 06 Nov 1994 08:49:37 GMT"
    for expires in ("0", "-1", "tomorrow", "Sun, 06 Nov 1994 08:49:37 +0100"):
        fields = _fields(date=date, expires=expires)
        assert freshness_lifetime({}, fields, 200) == 0.0
        # Stored (Expires makes it explicitly cacheable), but stale from the start.
        policy = response_policy("GET", 200, fields, {}, False, response_time=NOV_6_1994)
        assert policy.storable and policy.lifetime == 0.0
    valid = _fields(date=date, expires="Sun, 06 Nov 1994 09:49:37 GMT")
    assert freshness_lifetime({}, valid, 200) == 3600.0
    # max-age wins over Expires, valid or not (RFC 9111 5.3).
    cc = parse_cache_control("max-age=60")
    assert freshness_lifetime(cc, _fields(date=date, expires="0"), 200) == 60.0


def test_an_invalid_date_or_last_modified_is_not_used():
    fields = _fields(date="yesterday", last_modified="Sun, 06 Nov 1994 08:49:37 GMT")
    # Date invalid: the response time stands in for it, so the heuristic still has a base.
    assert freshness_lifetime({}, fields, 200, response_time=NOV_6_1994 + 1000) == 100.0
    bad_lm = _fields(date="Sun, 06 Nov 1994 08:49:37 GMT", last_modified="a while ago")
    assert freshness_lifetime({}, bad_lm, 200) == 0.0


@pytest.mark.parametrize("status", [100, 101, 102, 103, 199])
def test_interim_responses_are_never_stored(status):
    policy = response_policy("GET", status, _fields(cache_control="max-age=600"), {}, False)
    assert not policy.storable and policy.reason == "status"


# --------------------------------------------------------------------------- RFC 9213

CDN = ("cdn-cache-control",)
OURS = ("edge7-cache-control", "cdn-cache-control")


def _policy(targets=CDN, **headers: str):
    return response_policy("GET", 200, _fields(**headers), {}, False, targets=targets)


def test_rfc_9213_example_cdn_fresh_for_600_seconds_others_less():
    # "fresh for 600 seconds [for a CDN], other shared caches 120, remaining caches 60"
    policy = _policy(cache_control="max-age=60, s-maxage=120", cdn_cache_control="max-age=600")
    assert policy.storable and policy.lifetime == 600.0
    # Without the targeted field the shared-cache rule (s-maxage) applies.
    assert _policy(cache_control="max-age=60, s-maxage=120").lifetime == 120.0


def test_rfc_9213_example_cdn_stores_what_others_must_not():
    policy = _policy(cdn_cache_control="max-age=600", cache_control="no-store")
    assert policy.storable and policy.lifetime == 600.0
    assert not _policy(cache_control="no-store").storable


def test_rfc_9213_example_none_lets_only_cdns_store():
    # "none" is not a directive: it is there to avoid an empty field, which would be ignored.
    assert _policy(cache_control="no-store", cdn_cache_control="none").storable
    assert not _policy(cache_control="no-store", cdn_cache_control="").storable


def test_the_field_targeted_at_this_edge_by_name_comes_first():
    headers = {
        "edge7_cache_control": "max-age=1200",
        "cdn_cache_control": "max-age=600",
        "cache_control": "max-age=60",
    }
    assert _policy(OURS, **headers).lifetime == 1200.0
    assert _policy(CDN, **headers).lifetime == 600.0
    assert _policy((), **headers).lifetime == 60.0  # a cache with no target list


def test_a_targeted_field_that_does_not_parse_is_ignored():
    # RFC 8941 dictionaries: a parse error makes the whole field invalid, as if absent.
    assert targeted_directives(_fields(cdn_cache_control='max-age="60'), CDN) is None
    assert targeted_directives(_fields(cdn_cache_control="max-age=60 60"), CDN) is None
    bad_first = _policy(OURS, edge7_cache_control="max-age=(", cdn_cache_control="max-age=600")
    assert bad_first.lifetime == 600.0
    assert _policy(cdn_cache_control="MAX-AGE=600", cache_control="max-age=5").lifetime == 5.0


def test_targeted_directives_have_cache_control_semantics():
    assert not _policy(cdn_cache_control="no-store", cache_control="max-age=600").storable
    assert not _policy(cdn_cache_control="private", cache_control="public, max-age=9").storable
    assert _policy(cdn_cache_control="max-age=600, must-revalidate").stale_forbidden
    swr = _policy(cdn_cache_control="max-age=1, stale-while-revalidate=30")
    assert swr.swr == 30.0
    assert targeted_directives(_fields(cdn_cache_control="max-age=5, no-cache=?0"), CDN) == {
        "max-age": "5"
    }


def test_a_targeted_field_also_replaces_expires():
    policy = _policy(
        date="Sun, 06 Nov 1994 08:49:37 GMT",
        expires="Sun, 06 Nov 1994 09:49:37 GMT",
        cdn_cache_control="must-revalidate",
    )
    assert policy.lifetime == 0.0


def _run(scenario, **config) -> None:
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


def test_the_edge_obeys_cdn_cache_control_and_keeps_it_from_clients():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        origin_app.ROUTES[path] = {
            "headers": {"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600"}
        }
        first, second = await client.get(path), await client.get(path)
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        for response in (first, second):
            assert "cdn-cache-control" not in response.headers
            assert response.headers["cache-control"] == "no-store"  # for the caches downstream

    _run(scenario)


def test_forwarding_targeted_fields_is_an_option():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        origin_app.ROUTES[path] = {
            "headers": {"Cache-Control": "max-age=5", "Edge7-Cache-Control": "max-age=600"}
        }
        await client.get(path)
        hit = await client.get(path)
        assert hit.headers["x-cache"] == "HIT" and int(hit.headers["age"]) < 5
        assert hit.headers["edge7-cache-control"] == "max-age=600"

    _run(
        scenario,
        targeted_cache_control=("edge7-cache-control", "cdn-cache-control"),
        forward_targeted_cache_control=True,
    )


def test_a_304_without_the_targeted_field_keeps_the_stored_one():
    """RFC 9111 4.3.4: fields the 304 does not carry stay as stored, targeted ones included."""

    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        origin_app.ROUTES[path] = {
            "honour_conditionals": True,
            "headers": {
                "Cache-Control": "no-store",
                "CDN-Cache-Control": "max-age=0",
                "ETag": '"v1"',
            },
        }
        assert (await client.get(path)).headers["x-cache"] == "MISS"
        origin_app.ROUTES[path] = {
            "honour_conditionals": True,
            "headers": {"Cache-Control": "no-store", "ETag": '"v1"'},
        }
        again = await client.get(path)
        assert again.headers["x-cache"] == "REVALIDATED"
        assert (await client.get(path)).headers["x-cache"] == "REVALIDATED"  # still stored
        assert origin_app.LAST_HEADERS[path]["if-none-match"] == '"v1"'

    _run(scenario)


def test_an_invalid_age_from_the_origin_is_ignored():
    async def scenario(client: httpx.AsyncClient, path: str) -> None:
        origin_app.ROUTES[path] = {"headers": {"Cache-Control": "max-age=300", "Age": "abc"}}
        await client.get(path)
        hit = await client.get(path)
        # Ignored, not "infinitely old": the response stays fresh and is served from cache.
        assert hit.headers["x-cache"] == "HIT" and int(hit.headers["age"]) < 300

    _run(scenario)


def test_an_interim_103_from_a_real_origin_is_not_what_is_stored(make_edge):
    from tests.edge.raw_origin import RawOrigin

    raw = RawOrigin()
    try:
        raw.route("/hinted", ("respond-after-103", 200, {"Cache-Control": "max-age=300"}))
        edge = make_edge(raw.url)
        first = edge.get("/hinted")
        assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
        hit = edge.get("/hinted")
        assert (hit.status_code, hit.headers["x-cache"], hit.text) == (200, "HIT", "/hinted #1")
        assert "link" not in hit.headers  # the 103's fields are not the response's
        assert raw.count("/hinted") == 1
    finally:
        raw.close()
