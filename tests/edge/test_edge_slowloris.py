"""Slowloris: a request head that never ends, or never starts, or a body that stops arriving,
does not hold a connection.

Each test runs a real `madbwpu-r edge` with `--header-timeout 1 --body-timeout 1`; the generous
GUARD bounds only how long a test waits for a close that never comes, it asserts no speed.
"""

from __future__ import annotations

import select
import socket
import time

import orjson
import pytest

from tests.edge.conftest import Edge

GUARD = 30.0
GOOD = b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n"


def _connect(edge: Edge) -> socket.socket:
    host, port = edge.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=GUARD)


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a TimeoutError fails the
    test: the server kept it open)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _answer(sock: socket.socket, request: bytes) -> bytes:
    """The head of the response to `request`, its body read whole (the connection is reused)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head


@pytest.fixture(params=["httptools", "h11"])
def edge(request, origin, make_edge) -> Edge:
    http = request.param
    return make_edge(
        origin.url, "--http", http, "--header-timeout", "1", "--body-timeout", "1",
        name=f"slow-{http}",
    )  # fmt: skip


def test_a_head_sent_one_byte_at_a_time_is_cut_off_with_a_408(edge):
    refused = edge.stats()["refused"]
    trickle = b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: " + b"a" * 10_000
    with _connect(edge) as sock:
        deadline = time.monotonic() + GUARD
        for byte in trickle:  # a byte every 0.1 s: never idle for the timeout, never done
            assert time.monotonic() < deadline, "the edge kept a never-ending head open"
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
                break
            if select.select([sock], [], [], 0.1)[0]:
                answer = until_closed(sock)
                break
        else:
            pytest.fail("the whole trickle was accepted")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"application/problem+json" in head and b"connection: close" in head.lower()
    assert orjson.loads(body)["status"] == 408
    assert edge.stats()["refused"] == refused + 1
    assert edge.get("/healthz").status_code == 200  # the edge itself is fine


def test_a_connection_that_never_sends_is_closed(edge):
    with _connect(edge) as sock:
        assert until_closed(sock) == b""  # closed, and nothing written: no request was made


def test_a_head_in_several_reads_within_the_timeout_is_served(edge):
    with _connect(edge) as sock:
        sock.sendall(GOOD[:10])
        time.sleep(0.2)
        assert _answer(sock, GOOD[10:]).startswith(b"HTTP/1.1 200 ")


def test_idle_time_between_requests_is_the_keep_alives_not_the_head_timeout(edge):
    with _connect(edge) as sock:
        assert _answer(sock, GOOD).startswith(b"HTTP/1.1 200 ")
        time.sleep(2)  # idle past --header-timeout, well within --keep-alive (75 s)
        assert _answer(sock, GOOD).startswith(b"HTTP/1.1 200 ")


def post_head(path: str, length: int) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: edge\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_body_that_stops_arriving_is_cut_off_with_a_408(edge, origin, uniq):
    refused = edge.stats()["refused"]
    with _connect(edge) as sock:
        sock.sendall(post_head(f"{uniq}/upload", 100) + b"x" * 10)  # then nothing more
        answer = until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"application/problem+json" in head
    assert "stopped arriving" in orjson.loads(body)["detail"]
    assert edge.stats()["refused"] == refused + 1
    assert origin.count(f"{uniq}/upload") == 0  # the origin saw its request abandoned
    assert edge.get("/healthz").status_code == 200


def test_a_body_that_keeps_coming_is_never_cut_off_however_long_it_takes(edge, origin, uniq):
    body = b"0123456789" * 3
    with _connect(edge) as sock:
        sock.sendall(post_head(f"{uniq}/upload", len(body)))
        for byte in body:  # 30 bytes over about 3 s: three times the timeout, never idle for it
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
        assert _answer(sock, b"").startswith(b"HTTP/1.1 200 ")
    assert origin.stats(f"{uniq}/upload")["body"]["bytes"] == len(body)
