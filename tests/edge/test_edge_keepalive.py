"""Idle client connections stay open past uvicorn's 5 s default (clients reuse them then)."""

from __future__ import annotations

import socket
import time

from tests.edge.conftest import Edge

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n"


def _exchange(sock: socket.socket) -> bytes:
    """One request, one whole response (b"" when the edge closed the connection)."""
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _connect(edge: Edge) -> socket.socket:
    host, port = edge.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    assert _exchange(sock).startswith(b"HTTP/1.1 200")
    return sock


def _still_answers(sock: socket.socket) -> bool:
    try:
        return _exchange(sock).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_idle_keep_alive_outlives_five_seconds_and_is_configurable(origin, make_edge):
    default = make_edge(origin.url)
    short = make_edge(origin.url, "--keep-alive", "1", name="short")
    kept, dropped = _connect(default), _connect(short)
    try:
        time.sleep(6)  # idle longer than uvicorn's default timeout_keep_alive (5 s)
        assert _still_answers(kept)
        assert not _still_answers(dropped)  # --keep-alive 1 reached the server
    finally:
        kept.close()
        dropped.close()
