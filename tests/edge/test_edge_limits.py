"""Hostile heads and bodies against real edge processes, on both HTTP parsers (issue 7, 1 and 8).

Each refusal is a problem+json 4xx (or a clean close), reaches no origin, leaves the edge
answering, and costs memory bounded by the configured limits, not by what the client sends.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.edge.conftest import AUTH, HTTP
from tests.edge.rawhttp import (
    closed_after,
    connect,
    exchange,
    read_answer,
    rss_peak_kib,
    send_all,
)

MiB = 1 << 20
PARSERS = ["httptools", "h11"]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    return request.param


def _get(path: str, *lines: str, host: str | None = "edge.test", version: str = "1.1") -> bytes:
    head = [f"GET {path} HTTP/{version}"]
    if host is not None:
        head.append(f"Host: {host}")
    head.extend(lines)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


def _still_serving(edge) -> None:
    assert HTTP.get(edge.url + "/healthz").status_code == 200


def _no_traceback(edge) -> None:
    edge.stop()
    assert "Traceback" not in edge.logs, edge.logs[-3000:]


def test_5000_headers_get_431_and_are_not_forwarded(origin, make_edge, uniq, parser):
    edge = make_edge(origin.url, "--http", parser)
    path = f"{uniq}/many"
    lines = [f"X-Filler-{i}: {i}" for i in range(5000)]
    answer = exchange(edge.url, _get(path, *lines))
    assert answer is not None and answer.status == 431
    assert answer.problem()["status"] == 431
    assert answer.headers["connection"] == "close"
    assert origin.count(path) == 0
    # At the limit (100 by default) a request still goes through.
    ok = exchange(edge.url, _get(path, *lines[:90]))
    assert ok is not None and ok.status == 200
    assert origin.count(path) == 1
    _still_serving(edge)
    assert edge.stats()["refused"] == 1
    _no_traceback(edge)


def test_a_1mb_header_gets_431_and_is_not_forwarded(origin, make_edge, uniq, parser):
    edge = make_edge(origin.url, "--http", parser)
    path = f"{uniq}/big"
    answer = exchange(edge.url, _get(path, "X-Big: " + "a" * MiB))
    assert answer is not None and answer.status == 431
    assert "header block" in answer.problem()["detail"]
    assert origin.count(path) == 0
    _still_serving(edge)
    _no_traceback(edge)


def test_a_header_block_just_over_the_configured_limit_in_one_read(origin, make_edge, uniq, parser):
    edge = make_edge(origin.url, "--http", parser, "--max-header-bytes", "4KiB")
    path = f"{uniq}/edge-of-limit"
    assert exchange(edge.url, _get(path, "X-Pad: " + "p" * 3000)).status == 200
    answer = exchange(edge.url, _get(path, "X-Pad: " + "p" * 5000))
    assert answer is not None and answer.status == 431
    assert origin.count(path) == 1


def test_a_32mib_header_line_is_cut_off_without_buffering_it(origin, make_edge, uniq, parser):
    edge = make_edge(origin.url, "--http", parser)
    path = f"{uniq}/huge-line"
    assert exchange(edge.url, _get(path)).status == 200  # warm: the baseline includes a request
    before = rss_peak_kib(edge.pid)
    with connect(edge.url) as sock:
        send_all(sock, f"GET {path} HTTP/1.1\r\nHost: edge.test\r\nX-Huge: ".encode())
        completed = send_all(sock, b"h" * (32 * MiB))
        answer = read_answer(sock)
    grown = rss_peak_kib(edge.pid) - before
    assert answer is None or answer.status == 431
    assert not completed or answer is not None
    assert grown < 8 * 1024, f"the edge's peak RSS grew by {grown} KiB"
    assert origin.count(path) == 1
    _still_serving(edge)
    _no_traceback(edge)


def test_a_long_request_target_gets_414(origin, make_edge, uniq, parser):
    edge = make_edge(origin.url, "--http", parser)
    path = f"{uniq}/long?q=" + "q" * (9 * 1024)
    answer = exchange(edge.url, _get(path))
    assert answer is not None and answer.status == 414
    assert answer.problem()["title"] == "URI Too Long"
    _still_serving(edge)
    _no_traceback(edge)


def test_a_malformed_request_line_is_a_problem_not_plain_text(origin, make_edge, parser):
    edge = make_edge(origin.url, "--http", parser)
    answer = exchange(edge.url, b"GARBAGE\x01 / HTTP/9.9\r\n\r\n")
    assert answer is not None and answer.status == 400
    assert answer.problem()["status"] == 400
    _still_serving(edge)
    _no_traceback(edge)


# --------------------------------------------------------------------------- Host (RFC 9112 3.2)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param((), id="no-host"),
        pytest.param(("Host: a.example", "Host: b.example"), id="two-hosts"),
        pytest.param(("Host: exa mple",), id="space"),
        pytest.param(("Host: a/b",), id="slash"),
        pytest.param(("Host: ",), id="empty"),
        pytest.param(("Host: [::1",), id="open-bracket"),
    ],
)
def test_a_missing_repeated_or_invalid_host_gets_400(origin, make_edge, uniq, parser, lines):
    edge = make_edge(origin.url, "--http", parser)
    path = f"{uniq}/host"
    origin.route(path, headers={"Cache-Control": "max-age=300"})
    # Stored first, so the httptools fast hit path is what the bad request meets.
    assert exchange(edge.url, _get(path)).status == 200
    assert exchange(edge.url, _get(path)).headers["x-cache"] == "HIT"
    answer = exchange(edge.url, _get(path, *lines, host=None))
    assert answer is not None and answer.status == 400, answer
    assert answer.problem()["status"] == 400
    post = exchange(
        edge.url,
        ("\r\n".join([f"POST {path} HTTP/1.1", *lines, "Content-Length: 0"]) + "\r\n\r\n").encode(),
    )
    assert post is not None and post.status == 400
    assert origin.count(path) == 1
    _still_serving(edge)
    _no_traceback(edge)


def test_http_1_0_without_host_is_served(origin, make_edge, uniq, parser):
    edge = make_edge(origin.url, "--http", parser)
    path = f"{uniq}/ten"
    answer = exchange(edge.url, _get(path, host=None, version="1.0"))
    assert answer is not None and answer.status == 200


# --------------------------------------------------------------------------- request bodies


def _post_head(path: str, *lines: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: edge.test", "Content-Type: text/csv", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _chunked(data: bytes, size: int = 256 * 1024) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    ]
    return b"".join(parts)


def test_a_body_over_the_limit_is_refused_up_front_by_content_length(
    origin, make_edge, uniq, parser
):
    edge = make_edge(origin.url, "--http", parser, "--max-body-bytes", "1MiB")
    path = f"{uniq}/upfront"
    with connect(edge.url) as sock:
        # Only the head is sent: the answer must not wait for 5 MiB that never come.
        send_all(sock, _post_head(path, f"Content-Length: {5 * MiB}"))
        answer = read_answer(sock)
        assert answer is not None and answer.status == 413
        assert answer.problem()["status"] == 413
        assert closed_after(sock)
    assert origin.count(path) == 0
    # Within the limit it goes through, body intact.
    body = b"id\n" + b"1\n" * 1000
    ok = exchange(edge.url, _post_head(path, f"Content-Length: {len(body)}") + body)
    assert ok is not None and ok.status == 200
    assert origin.stats(path)["body"] == {
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    _still_serving(edge)
    _no_traceback(edge)


def test_a_chunked_body_over_the_limit_is_cut_off_mid_stream(origin, make_edge, uniq, parser):
    edge = make_edge(origin.url, "--http", parser, "--max-body-bytes", "1MiB")
    path = f"{uniq}/chunked"
    with connect(edge.url) as sock:
        send_all(sock, _post_head(path, "Transfer-Encoding: chunked"))
        send_all(sock, _chunked(b"x" * (3 * MiB)))
        answer = read_answer(sock)
    assert answer is not None and answer.status == 413
    assert "1048576 bytes" in answer.problem()["detail"]
    assert origin.count(path) == 0  # the origin never got a complete request
    # A chunked body within the limit is streamed through whole.
    body = b"y" * (512 * 1024)
    ok = exchange(
        edge.url, _post_head(path, "Transfer-Encoding: chunked") + _chunked(body) + b"0\r\n\r\n"
    )
    assert ok is not None and ok.status == 200
    assert origin.stats(path)["body"]["sha256"] == hashlib.sha256(body).hexdigest()
    _still_serving(edge)
    _no_traceback(edge)


def test_a_150mib_unauthenticated_chunked_post_is_streamed_in_bounded_memory(
    origin, make_edge, uniq
):
    edge = make_edge(origin.url)
    path = f"{uniq}/ingest"
    assert exchange(edge.url, _post_head(path, "Content-Length: 0")).status == 200  # warm
    before = rss_peak_kib(edge.pid)
    block = b"\0" * MiB
    chunk = b"%x\r\n%s\r\n" % (len(block), block)
    digest = hashlib.sha256()
    with connect(edge.url, timeout=60) as sock:
        send_all(sock, _post_head(path, "Transfer-Encoding: chunked"))
        for _ in range(150):
            assert send_all(sock, chunk)
            digest.update(block)
        send_all(sock, b"0\r\n\r\n")
        answer = read_answer(sock)
    grown = rss_peak_kib(edge.pid) - before
    assert answer is not None and answer.status == 200
    assert origin.stats(path)["body"] == {"bytes": 150 * MiB, "sha256": digest.hexdigest()}
    assert grown < 16 * 1024, f"the edge's peak RSS grew by {grown} KiB for a 150 MiB body"
    _still_serving(edge)
    _no_traceback(edge)

    # --------------------------------------------------------------------------- internals
    _no_traceback(edge)


def test_edge_internals_need_a_token_and_do_not_leak_the_origin(origin, make_edge):
    edge = make_edge(origin.url)
    admin = make_edge(origin.url, "--admin-token", "admin-secret", name="admin")
    assert HTTP.get(edge.url + "/metrics").status_code == 200  # counters only, as the API's
    assert origin.url not in HTTP.get(edge.url + "/metrics").text
    for path in ("/_edge/stats",):
        for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 403)):
            refused = HTTP.get(edge.url + path, headers=headers)
            assert refused.status_code == status
            assert refused.headers["content-type"] == "application/problem+json"
            assert origin.url not in refused.text and "127.0.0.1" not in refused.text
        assert HTTP.get(edge.url + path, headers=AUTH).status_code == 200
        assert (
            HTTP.get(admin.url + path, headers={"Authorization": "Bearer admin-secret"}).status_code
            == 200
        )
        # The admin token opens the internals, never the purge.
    assert (
        HTTP.post(
            admin.url + "/_edge/purge",
            json={"keys": ["k"]},
            headers={"Authorization": "Bearer admin-secret"},
        ).status_code
        == 403
    )
    health = HTTP.get(edge.url + "/healthz")
    assert health.status_code == 200 and origin.url not in health.text
