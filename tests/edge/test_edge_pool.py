"""One edge over several origins (`--origin A --origin B`): balanced, failed over, healed."""

from __future__ import annotations

import sys
import threading
import time
import uuid

import httpx

from tests.edge.conftest import HERE, HTTP, Proc, free_port


class PortOrigin(Proc):
    """The test origin on a given port, so that it can come back where it was."""

    def __init__(self, port: int) -> None:
        super().__init__(
            [sys.executable, str(HERE / "origin_app.py"), str(port)],
            f"http://127.0.0.1:{port}",
            "/_control/stats?path=/",
        )
        self.wait()

    def count(self, path: str) -> int:
        return HTTP.get(self.url + "/_control/stats", params={"path": path}).json()["count"]

    def route(self, path: str, **config: object) -> None:
        HTTP.post(self.url + "/_control/set", json={"path": path, **config}).raise_for_status()


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def healthy(edge, url: str) -> bool:
    return {o["origin"]: o["healthy"] for o in edge.stats()["origins"]}[url]


def test_misses_are_balanced_failed_over_and_healed(make_edge):
    port_a = free_port()
    a, b = PortOrigin(port_a), PortOrigin(free_port())
    try:
        edge = make_edge(a.url, "--origin", b.url)
        paths = [f"/p/{uuid.uuid4().hex}" for _ in range(20)]
        assert all(edge.get(p).status_code == 200 for p in paths)
        on_a, on_b = sum(a.count(p) for p in paths), sum(b.count(p) for p in paths)
        assert on_a + on_b == 20 and on_a > 0 and on_b > 0  # both got misses

        a.kill()
        paths = [f"/p/{uuid.uuid4().hex}" for _ in range(20)]
        assert [edge.get(p).status_code for p in paths] == [200] * 20  # none failed
        assert sum(b.count(p) for p in paths) == 20
        assert healthy(edge, a.url) is False

        back = PortOrigin(port_a)  # answers its heartbeat again: taken back
        try:
            wait_for(lambda: healthy(edge, back.url))
            paths = [f"/p/{uuid.uuid4().hex}" for _ in range(20)]
            assert all(edge.get(p).status_code == 200 for p in paths)
            assert sum(back.count(p) for p in paths) > 0
        finally:
            back.stop()
    finally:
        a.stop()
        b.stop()


def test_a_get_whose_origin_dies_mid_request_is_answered_by_another(make_edge):
    a, b = PortOrigin(free_port()), PortOrigin(free_port())
    try:
        edge = make_edge(a.url, "--origin", b.url)
        path = f"/slow/{uuid.uuid4().hex}"
        for origin in (a, b):
            origin.route(path, delay=30)
        result: dict[str, httpx.Response] = {}
        reader = threading.Thread(target=lambda: result.update(r=edge.get(path, timeout=60)))
        reader.start()
        wait_for(lambda: a.count(path) + b.count(path) == 1)  # it reached one of them
        first, second = (a, b) if a.count(path) == 1 else (b, a)
        second.route(path, delay=0)
        first.kill()  # dies with the request in flight
        reader.join(60)
        assert result["r"].status_code == 200
        assert second.count(path) == 1
    finally:
        a.stop()
        b.stop()


def test_a_post_is_not_sent_twice_when_its_origin_dies_under_it(make_edge):
    a, b = PortOrigin(free_port()), PortOrigin(free_port())
    try:
        edge = make_edge(a.url, "--origin", b.url)
        path = f"/write/{uuid.uuid4().hex}"
        for origin in (a, b):
            origin.route(path, delay=30)
        result: dict[str, httpx.Response] = {}
        writer = threading.Thread(
            target=lambda: result.update(r=HTTP.post(edge.url + path, content=b"x", timeout=60))
        )
        writer.start()
        wait_for(lambda: a.count(path) + b.count(path) == 1)
        first, second = (a, b) if a.count(path) == 1 else (b, a)
        first.kill()
        writer.join(60)
        assert result["r"].status_code == 502  # it may have been acted on: not repeated
        assert second.count(path) == 0
    finally:
        a.stop()
        b.stop()
