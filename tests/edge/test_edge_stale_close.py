"""The origin drops the connection: stale is served only where the stored response allows it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.edge.raw_origin import RawOrigin

DROP = ("drop",)


@pytest.fixture
def raw_origin() -> Iterator[RawOrigin]:
    origin = RawOrigin()
    yield origin
    origin.close()


def first_then(cache_control: str, *later: tuple) -> tuple[tuple, ...]:
    return (("respond", 200, {"Cache-Control": cache_control}), *later)


# RFC 9111 4.2.4 / 5.2.2.2 / 5.2.2.8 / 5.2.2.10: stale is never served without validation, and
# a disconnected cache answers 504. s-maxage implies proxy-revalidate, so the client's own
# stale-if-error cannot override it either.
FORBIDDEN = {
    "/must-revalidate": ("max-age=0, must-revalidate", {}),
    "/proxy-revalidate": ("max-age=0, proxy-revalidate", {}),
    "/no-cache": ("no-cache", {}),
    "/s-maxage": ("s-maxage=0", {}),
    "/s-maxage-request-sie": ("s-maxage=0", {"Cache-Control": "stale-if-error=60"}),
    "/must-revalidate-sie": ("max-age=0, must-revalidate, stale-if-error=60", {}),
}
ALLOWED = {
    "/sie": ("max-age=0, stale-if-error=60", {}),
    "/request-sie": ("max-age=0", {"Cache-Control": "stale-if-error=60"}),
    "/s-maxage-sie": ("s-maxage=0, stale-if-error=60", {}),  # the origin's own permission
}


def test_stale_is_served_on_a_dropped_connection_only_where_allowed(raw_origin, make_edge):
    for path, (cc, _) in {**FORBIDDEN, **ALLOWED, "/plain": ("max-age=0", {})}.items():
        raw_origin.route(path, *first_then(cc, DROP))
    edge = make_edge(raw_origin.url)
    for path in [*FORBIDDEN, *ALLOWED, "/plain"]:
        first = edge.get(path)
        assert (first.status_code, first.headers["x-cache"]) == (200, "MISS"), path
    for path, (_, request_headers) in FORBIDDEN.items():
        second = edge.get(path, headers=request_headers)
        assert second.status_code == 504, path
        assert second.headers["content-type"] == "application/problem+json", path
        assert "x-cache" not in second.headers, path
    for path, (_, request_headers) in ALLOWED.items():
        second = edge.get(path, headers=request_headers)
        assert (second.status_code, second.text, second.headers["x-cache"]) == (
            200,
            f"{path} #1",
            "STALE",
        ), path
    plain = edge.get("/plain")  # nothing forbids stale, nothing allows it: the origin's failure
    assert plain.status_code == 502
    assert plain.headers["content-type"] == "application/problem+json"


def test_an_origin_5xx_is_passed_on_where_stale_is_forbidden(raw_origin, make_edge):
    down = ("respond", 503, {"Cache-Control": "no-store"})
    raw_origin.route("/s-maxage", *first_then("s-maxage=0", down))
    raw_origin.route("/sie", *first_then("max-age=0, stale-if-error=60", down))
    edge = make_edge(raw_origin.url)
    assert edge.get("/s-maxage").status_code == edge.get("/sie").status_code == 200
    asked = edge.get("/s-maxage", headers={"Cache-Control": "stale-if-error=60"})
    assert (asked.status_code, asked.text) == (503, "/s-maxage #2")
    assert edge.get("/sie").headers["x-cache"] == "STALE"
