"""A failed origin request is sent again only if it provably never reached the origin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from madbwpu_r.edge import EdgeConfig, create_app
from tests.edge.raw_origin import RawOrigin


@pytest.fixture
def raw_origin() -> Iterator[RawOrigin]:
    origin = RawOrigin()
    yield origin
    origin.close()


def test_a_request_the_origin_dropped_is_not_sent_again(raw_origin, make_edge):
    raw_origin.route("/get", ("drop",))
    raw_origin.route("/put", ("drop",))
    edge = make_edge(raw_origin.url)
    assert edge.get("/get").status_code == 502
    assert edge.get("/get", headers={"Cache-Control": "no-cache"}).status_code == 502
    assert httpx.put(edge.url + "/put", content=b"x", timeout=10).status_code == 502
    # The origin read each request before closing: a retry would have made it act twice.
    assert (raw_origin.count("/get"), raw_origin.count("/put")) == (2, 1)


def test_a_pooled_connection_the_origin_closed_while_idle_is_replaced(raw_origin, make_edge):
    raw_origin.route("/p", ("respond-close", 200, {"Cache-Control": "no-store"}))
    edge = make_edge(raw_origin.url)
    for _ in range(3):
        assert edge.get("/p").status_code == 200
        time.sleep(0.1)  # the origin's FIN reaches the edge's idle pooled connection
    assert raw_origin.count("/p") == 3


class Scripted(httpx.AsyncBaseTransport):
    """Each origin request plays the next step: how far the request got before it failed."""

    def __init__(self, *steps: str) -> None:
        self.steps = list(steps)
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = self.steps.pop(0)
        trace = request.extensions["trace"]
        if step == "refused":
            raise httpx.ConnectError("connection refused")
        if step == "unsent":  # a dead pooled connection: the header block could not be written
            await trace("http11.send_request_headers.failed", {})
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        await trace("http11.send_request_headers.complete", {})
        if step == "sent":  # written, then no (or a garbled) answer: the origin may have acted
            raise httpx.RemoteProtocolError("illegal status line")
        return httpx.Response(
            200, headers={"Cache-Control": "max-age=60"}, stream=httpx.ByteStream(b"ok")
        )


@pytest.mark.parametrize(
    ("method", "steps", "status", "calls"),
    [
        ("GET", ("refused", "ok"), 200, 2),
        ("GET", ("unsent", "ok"), 200, 2),
        ("HEAD", ("unsent", "ok"), 200, 2),
        ("GET", ("sent", "ok"), 502, 1),
        ("GET", ("unsent", "unsent"), 502, 2),
        ("PUT", ("unsent", "ok"), 502, 1),
        ("DELETE", ("refused", "ok"), 502, 1),
        ("POST", ("refused", "ok"), 502, 1),
    ],
)
def test_only_get_and_head_that_never_reached_the_origin_are_retried(method, steps, status, calls):
    origin = Scripted(*steps)

    async def main() -> int:
        edge = create_app(EdgeConfig(origin="http://origin.test"), transport=origin)
        transport = httpx.ASGITransport(app=edge)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as client:
            response = await client.request(method, "/r")
        await edge.shutdown()
        return response.status_code

    assert asyncio.run(main()) == status
    assert origin.calls == calls
