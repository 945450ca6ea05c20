"""Smoke tests for the edge benchmark's helpers; no wrk, nginx or timing needed (CI has none)."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path

import httpx
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


edge = load("edge")
origin = load("origin")

WRK_SAMPLE = """\
Running 10s test @ http://127.0.0.1:41751/kib
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.31ms  810.33us  21.05ms   85.12%
    Req/Sec    25.98k     2.41k   31.55k    71.50%
  Latency Distribution
     50%    1.14ms
     75%    1.52ms
     90%    2.11ms
     99%    4.47ms
  517206 requests in 10.01s, 649.10MB read
Requests/sec:  51669.93
Transfer/sec:     64.85MB
"""

WRK_ERRORS_SAMPLE = """\
Running 1s test @ http://127.0.0.1:18931/nope
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   130.25us  120.10us   1.02s    97.00%
    Req/Sec    16.70k     1.20k   18.00k    80.00%
  Latency Distribution
     50%  102.00us
     75%  120.00us
     90%  160.00us
     99%    1.02s
  18332 requests in 1.10s, 2.67MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 18332
Requests/sec:  16666.36
Transfer/sec:      2.43MB
"""


def test_parse_wrk_reads_rate_and_percentiles() -> None:
    result = edge.parse_wrk(WRK_SAMPLE)
    assert result.requests_per_s == pytest.approx(51669.93)
    assert result.p50_ms == pytest.approx(1.14)
    assert result.p99_ms == pytest.approx(4.47)
    assert result.requests == 517206
    assert result.socket_errors == 0
    assert result.non_2xx == 0


def test_parse_wrk_converts_units_and_counts_errors() -> None:
    result = edge.parse_wrk(WRK_ERRORS_SAMPLE)
    assert result.p50_ms == pytest.approx(0.102)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.socket_errors == 6
    assert result.non_2xx == 18332


def test_parse_wrk_without_latency_flag_is_an_error() -> None:
    without = WRK_SAMPLE.split("  Latency Distribution")[0] + "Requests/sec:  1.0\n"
    with pytest.raises(ValueError, match="latency"):
        edge.parse_wrk(without)


def test_nginx_config_renders_every_placeholder(tmp_path: Path) -> None:
    text = edge.render_nginx_config(tmp_path, listen_port=8123, origin_port=8124, cache_lock=True)
    assert not re.search(r"@[A-Z_]+@", text)
    assert "listen 127.0.0.1:8123;" in text
    assert "server 127.0.0.1:8124;" in text
    assert "proxy_cache_lock on;" in text
    assert "worker_processes 1;" in text
    assert f"proxy_cache_path {tmp_path}/cache" in text
    assert "keys_zone=c:8m max_size=1000m" in text
    assert "access_log off;" in text
    off = edge.render_nginx_config(tmp_path, listen_port=1, origin_port=2, cache_lock=False)
    assert "proxy_cache_lock off;" in off


def test_bench_flags_are_bounded() -> None:
    args = edge.parse_args(["--rounds", "3", "--duration", "10", "--connections", "64"])
    assert (args.rounds, args.duration, args.connections, args.sides) == (
        3,
        10,
        64,
        ["edge", "nginx"],
    )
    with pytest.raises(SystemExit):
        edge.parse_args(["--duration", "3600"])
    with pytest.raises(SystemExit):
        edge.parse_args(["--sides", "varnish"])


def test_origin_serves_cacheable_kib_and_counts_slow_paths() -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=origin.create_app(slow_seconds=0))
        async with httpx.AsyncClient(transport=transport, base_url="http://origin") as client:
            kib = await client.get("/kib")
            assert kib.status_code == 200
            assert len(kib.content) == 1024
            assert kib.headers["cache-control"] == "public, max-age=3600"
            count = await client.get("/count", params={"path": "/slow/a"})
            assert count.json()["count"] == 0
            for path in ("/slow/a", "/slow/a", "/slow/b"):
                assert (await client.get(path)).status_code == 200
            count = await client.get("/count", params={"path": "/slow/a"})
            assert count.json()["count"] == 2
            assert count.headers["cache-control"] == "no-store"
            assert (await client.get("/missing")).status_code == 404

    asyncio.run(scenario())


def read(data: bytes) -> tuple[int, bytes]:
    async def scenario() -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await edge.read_response(reader)

    return asyncio.run(scenario())


def test_raw_client_reads_content_length_and_chunked_bodies() -> None:
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Cache: HIT\r\n\r\nhello"
    assert read(plain + b"HTTP/1.1 200 OK\r\n") == (200, b"hello")
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
    )
    assert read(chunked) == (200, b"abcde")
    assert read(b'HTTP/1.1 304 Not Modified\r\nETag: "a"\r\n\r\n') == (304, b"")
