"""Edge cache benchmark: our edge vs nginx proxy_cache, same origin, same run, same machine.

    uv run python bench/edge.py [--rounds 3] [--duration 10] [--connections 64]

1. Cached 1 KiB hit: `wrk -t2 -c64 -d10s --latency` against each side, alternating the sides
   (A B, B A, ...), medians of requests/s, p50 and p99, and our ratio to nginx.
2. Coalescing: 50 concurrent requests for one cold URL whose origin takes 500 ms, released
   together over pre-opened keep-alive connections (raw asyncio streams; `--client httpx` for
   httpx.AsyncClient); origin request count (from the origin's counter) and slowest client, for
   our edge and for nginx with `proxy_cache_lock on`; a fresh cold URL per round and side. The
   same burst on a cached URL is timed too: it is what the client alone costs.

Prints the load average before and after; the last line is one JSON object with every figure.
Everything binds to 127.0.0.1 on free ports under a temp dir; every process it starts is
killed on exit, even on error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also importable by path (tests, scripts/conformance.py)
    sys.path.insert(0, str(HERE))

from _common import alternating, load_average, median, print_json_line, ratio, say  # noqa: E402

NGINX_TEMPLATE = HERE / "nginx" / "proxy-cache.conf.in"
PURGE_TOKEN = "bench-" + uuid.uuid4().hex  # throwaway, only ever sent to 127.0.0.1
SIDES = ("edge", "nginx")


class BenchError(Exception):
    """A step of the benchmark could not run; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    """Starts child processes in their own session and kills each one's group on exit."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
        log.close()
        self.started.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                raise BenchError(
                    f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}"
                )

    def close(self) -> None:
        for _name, proc in reversed(self.started):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 5
        for _name, proc in reversed(self.started):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group may hold children (e.g. nginx workers) even after the leader is gone.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait(timeout=5)
        self.started.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_http(url: str, procs: Processes, timeout: float = 30.0) -> None:
    """Poll until url answers (any status below 500), or fail with the server's log."""
    deadline = time.monotonic() + timeout
    last: Exception | str = "no answer"
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code < 500:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise BenchError(f"{url} not ready after {timeout:.0f} s: {last}")


def render_nginx_config(
    prefix: Path, listen_port: int, origin_port: int, cache_lock: bool = True
) -> str:
    """Fill bench/nginx/proxy-cache.conf.in; fails loudly if a placeholder is left over."""
    text = NGINX_TEMPLATE.read_text()
    values = {
        "PREFIX": str(prefix),
        "LISTEN_PORT": str(listen_port),
        "ORIGIN_PORT": str(origin_port),
        "CACHE_LOCK": "on" if cache_lock else "off",
    }
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BenchError(f"nginx template has unfilled placeholders: {left}")
    return text


def start_nginx(
    procs: Processes, workdir: Path, listen_port: int, origin_port: int, cache_lock: bool = True
) -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise BenchError("nginx not found: apt-get install -y nginx")
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_config(prefix, listen_port, origin_port, cache_lock))
    argv = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    procs.start("nginx", argv)
    return f"http://127.0.0.1:{listen_port}"


def start_origin(procs: Processes, port: int, slow_ms: float = 500.0) -> str:
    argv = [sys.executable, str(HERE / "origin.py"), "--port", str(port), "--slow-ms", str(slow_ms)]
    procs.start("origin", argv)
    return f"http://127.0.0.1:{port}"


def edge_command() -> list[str]:
    """The installed `madbwpu-r` script of this interpreter's environment (no `uv run` wrapper,
    so the process we kill is the edge itself)."""
    script = Path(sys.executable).parent / "madbwpu-r"
    if script.exists():
        return [str(script)]
    found = shutil.which("madbwpu-r")
    if found:
        return [found]
    return [sys.executable, "-c", "from madbwpu_r.cli.main import main; main()"]


def start_edge(procs: Processes, listen_port: int, origin: str) -> str:
    argv = [
        *edge_command(),
        "edge",
        "--origin",
        origin,
        "--listen",
        f"127.0.0.1:{listen_port}",
        "--purge-token",
        PURGE_TOKEN,
    ]
    procs.start("edge", argv)
    return f"http://127.0.0.1:{listen_port}"


# ---------------------------------------------------------------------------------------------
# wrk


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Read requests/s, p50/p99 (needs --latency), request and error counts from wrk's text."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in ", output, re.M)
    if not (rps and p50 and p99 and total):
        raise ValueError("wrk output lacks Requests/sec or the --latency distribution")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=_to_ms(p50.group(1)),
        p99_ms=_to_ms(p99.group(1)),
        requests=int(total.group(1)),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run_wrk(url: str, threads: int, connections: int, duration: int) -> WrkResult:
    wrk = shutil.which("wrk")
    if not wrk:
        raise BenchError("wrk not found: apt-get install -y wrk")
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk against {url} did not finish in {duration + 30} s") from None
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


# ---------------------------------------------------------------------------------------------
# Coalescing


@dataclass(frozen=True)
class CoalesceResult:
    origin_requests: int
    slowest_ms: float
    hit_slowest_ms: float  # the same burst on a cached URL: what the client alone costs
    non_200: int
    origin_ms: float  # one request for a fresh slow path straight to the origin, same round

    @property
    def over_origin_ms(self) -> float:
        return self.slowest_ms - self.origin_ms


Fetch = Callable[[int, str], Awaitable[int]]  # (client number, path) -> HTTP status


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response (Content-Length or chunked body): (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if status in (204, 304) or 100 <= status < 200:
        return status, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return status, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    return status, await reader.read()


class RawClients:
    """One pre-opened keep-alive connection per client; a request costs a few microseconds of
    client CPU, so on a busy 2-core machine the burst measures the cache, not the client."""

    def __init__(self, base: str, clients: int) -> None:
        parts = httpx.URL(base)
        self.host, self.port = parts.host, parts.port or 80
        self.clients = clients
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> RawClients:
        self.conns = list(
            await asyncio.gather(
                *(asyncio.open_connection(self.host, self.port) for _ in range(self.clients))
            )
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _reader, writer in self.conns:
            writer.close()

    async def fetch(self, number: int, path: str) -> int:
        reader, writer = self.conns[number]
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: madbwpu-r-bench\r\n\r\n".encode()
        )
        await writer.drain()
        status, _body = await read_response(reader)
        return status


class HttpxClients:
    """The same burst through one httpx.AsyncClient (heavier per request than RawClients)."""

    def __init__(self, base: str, clients: int, timeout: float) -> None:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        self.client = httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout)

    async def __aenter__(self) -> HttpxClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def fetch(self, number: int, path: str) -> int:
        return (await self.client.get(path)).status_code


async def burst(fetch: Fetch, path: str, clients: int) -> tuple[float, int]:
    """`clients` GETs of path released together: (slowest ms from the release, non-200 count)."""
    go = asyncio.Event()
    finished: list[float] = []
    statuses: list[int] = []

    async def one(number: int) -> None:
        await go.wait()
        status = await fetch(number, path)
        finished.append(time.perf_counter())
        statuses.append(status)

    tasks = [asyncio.create_task(one(n)) for n in range(clients)]
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return (max(finished) - start) * 1000, sum(1 for status in statuses if status != 200)


async def _coalesce(
    base: str, origin: str, clients: int, timeout: float, kind: str
) -> CoalesceResult:
    async with RawClients(origin, 1) as direct:
        await direct.fetch(0, "/kib")
        start = time.perf_counter()
        await asyncio.wait_for(direct.fetch(0, f"/slow/{uuid.uuid4().hex}"), timeout)
        origin_ms = (time.perf_counter() - start) * 1000
    pool = RawClients(base, clients) if kind == "raw" else HttpxClients(base, clients, timeout)
    async with pool:
        # Every connection is opened and used once first: the timed part measures the cache.
        await asyncio.wait_for(burst(pool.fetch, "/kib", clients), timeout)
        hit_ms, _ = await asyncio.wait_for(burst(pool.fetch, "/kib", clients), timeout)
        path = f"/slow/{uuid.uuid4().hex}"
        slowest_ms, bad = await asyncio.wait_for(burst(pool.fetch, path, clients), timeout)
    counted = httpx.get(f"{origin}/count", params={"path": path}, timeout=5).json()["count"]
    return CoalesceResult(counted, slowest_ms, hit_ms, bad, origin_ms)


def coalesce_round(
    base: str, origin: str, clients: int = 50, timeout: float = 15.0, kind: str = "raw"
) -> CoalesceResult:
    """One cold URL, `clients` requests released at once, against a fresh path each call."""
    try:
        return asyncio.run(_coalesce(base, origin, clients, timeout, kind))
    except (TimeoutError, OSError, httpx.HTTPError, asyncio.IncompleteReadError) as exc:
        raise BenchError(f"coalescing burst against {base} failed: {exc!r}") from None


# ---------------------------------------------------------------------------------------------
# Run


def warm(base: str) -> str:
    """Fetch the 1 KiB URL until the cache reports a hit (X-Cache); a bench of misses is void."""
    status = ""
    for _ in range(10):
        response = httpx.get(f"{base}/kib", timeout=5)
        if response.status_code != 200:
            raise BenchError(f"{base}/kib answered {response.status_code}")
        status = response.headers.get("x-cache", "")
        if status.upper().startswith("HIT"):
            return status
        time.sleep(0.05)
    raise BenchError(f"{base}/kib is not served from cache after 10 requests (X-Cache: {status!r})")


def rounded_median(values: Sequence[float]) -> float | None:
    value = median(values)
    return None if value is None else round(value, 3)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Our edge vs nginx proxy_cache (hits, coalescing)."
    )
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds (>= 1, default 3)")
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds per run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--clients", type=int, default=50, help="concurrent coalescing clients")
    parser.add_argument(
        "--coalesce-rounds", type=int, default=5, help="coalescing rounds per side (default 5)"
    )
    parser.add_argument(
        "--origin-ms",
        type=int,
        default=500,
        help="origin time of the cold URL (default 500; nginx's lock re-checks every 500 ms)",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="coalescing client: raw asyncio streams (default, cheapest) or httpx.AsyncClient",
    )
    parser.add_argument(
        "--sides", default="edge,nginx", help="comma list of edge,nginx (default both)"
    )
    args = parser.parse_args(argv)
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not args.sides or any(s not in SIDES for s in args.sides):
        parser.error("--sides takes edge and/or nginx")
    for name, low, high in (
        ("rounds", 1, 20),
        ("duration", 1, 60),
        ("connections", 1, 1024),
        ("threads", 1, 16),
        ("clients", 1, 500),
        ("coalesce_rounds", 1, 50),
        ("origin_ms", 10, 5000),
    ):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name} must be within {low}..{high}")
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict:
    result: dict = {
        "bench": "edge",
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "threads": args.threads,
        "clients": args.clients,
        "coalesce_rounds": args.coalesce_rounds,
        "coalesce_client": args.client,
        "origin_ms": args.origin_ms,
        "loadavg_before": load_average(),
    }
    say(f"load average before: {result['loadavg_before']}")
    with Processes(workdir) as procs:
        origin = start_origin(procs, free_port(), args.origin_ms)
        wait_http(f"{origin}/healthz", procs)
        bases: dict[str, str] = {}
        if "edge" in args.sides:
            bases["edge"] = start_edge(procs, free_port(), origin)
        if "nginx" in args.sides:
            bases["nginx"] = start_nginx(procs, workdir, free_port(), int(origin.rsplit(":", 1)[1]))
        for side, base in bases.items():
            wait_http(f"{base}/kib", procs)
            say(f"{side} at {base}; warm X-Cache: {warm(base)}")

        runs: dict[str, list[WrkResult]] = {side: [] for side in bases}
        for round_no, side in alternating(list(bases), args.rounds):
            procs.check_alive()
            res = run_wrk(f"{bases[side]}/kib", args.threads, args.connections, args.duration)
            runs[side].append(res)
            say(
                f"round {round_no + 1} {side:5} {res.requests_per_s:10.0f} req/s  "
                f"p50 {res.p50_ms:7.2f} ms  p99 {res.p99_ms:7.2f} ms  "
                f"errors {res.socket_errors} non-2xx {res.non_2xx}"
            )
        for side, side_runs in runs.items():
            result[f"{side}_rps"] = rounded_median([r.requests_per_s for r in side_runs])
            result[f"{side}_p50_ms"] = rounded_median([r.p50_ms for r in side_runs])
            result[f"{side}_p99_ms"] = rounded_median([r.p99_ms for r in side_runs])
            result[f"{side}_wrk_errors"] = sum(r.socket_errors + r.non_2xx for r in side_runs)
            result[f"{side}_wrk_runs"] = [asdict(r) for r in side_runs]
        if "edge_rps" in result and "nginx_rps" in result:
            result["ratio_rps_edge_to_nginx"] = ratio(result["edge_rps"], result["nginx_rps"], 3)

        coalesce: dict[str, list[CoalesceResult]] = {side: [] for side in bases}
        for _round, side in alternating(list(bases), args.coalesce_rounds):
            procs.check_alive()
            coalesce[side].append(
                coalesce_round(bases[side], origin, args.clients, kind=args.client)
            )
        for side, side_rounds in coalesce.items():
            result[f"{side}_coalesce_origin_requests"] = max(r.origin_requests for r in side_rounds)
            result[f"{side}_coalesce_slowest_ms"] = rounded_median(
                [r.slowest_ms for r in side_rounds]
            )
            result[f"{side}_coalesce_slowest_max_ms"] = round(
                max(r.slowest_ms for r in side_rounds), 3
            )
            result[f"{side}_coalesce_over_origin_ms"] = rounded_median(
                [r.over_origin_ms for r in side_rounds]
            )
            result[f"{side}_coalesce_hit_slowest_ms"] = rounded_median(
                [r.hit_slowest_ms for r in side_rounds]
            )
            result[f"{side}_coalesce_non_200"] = sum(r.non_200 for r in side_rounds)
            result[f"{side}_coalesce_rounds"] = [
                {
                    "origin_requests": r.origin_requests,
                    "slowest_ms": round(r.slowest_ms, 1),
                    "hit_slowest_ms": round(r.hit_slowest_ms, 1),
                    "origin_ms": round(r.origin_ms, 1),
                }
                for r in side_rounds
            ]
            say(
                f"coalesce {side:5} origin requests (max of rounds) "
                f"{result[f'{side}_coalesce_origin_requests']}, slowest client (median) "
                f"{result[f'{side}_coalesce_slowest_ms']:.1f} ms, over the origin's own time "
                f"{result[f'{side}_coalesce_over_origin_ms']:.1f} ms (same burst on a hit "
                f"{result[f'{side}_coalesce_hit_slowest_ms']:.1f} ms); rounds "
                f"{result[f'{side}_coalesce_rounds']}"
            )
    result["loadavg_after"] = load_average()
    return result


def summary(result: dict) -> str:
    lines = [f"load average after: {result['loadavg_after']}", "", "median of rounds:"]
    for side in SIDES:
        if f"{side}_rps" in result:
            lines.append(
                f"  {side:5} {result[f'{side}_rps']:10.0f} req/s  p50 {result[f'{side}_p50_ms']:.2f} ms"
                f"  p99 {result[f'{side}_p99_ms']:.2f} ms  coalescing: "
                f"{result[f'{side}_coalesce_origin_requests']} origin request(s), slowest "
                f"{result[f'{side}_coalesce_slowest_ms']:.1f} ms "
                f"(max {result[f'{side}_coalesce_slowest_max_ms']:.1f}; "
                f"+{result[f'{side}_coalesce_over_origin_ms']:.1f} ms over the origin; "
                f"burst on a hit {result[f'{side}_coalesce_hit_slowest_ms']:.1f} ms)"
            )
    if result.get("ratio_rps_edge_to_nginx") is not None:
        lines.append(f"  ratio edge/nginx req/s: {result['ratio_rps_edge_to_nginx']:.3f}")
    return "\n".join(lines)


def raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_exit)
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        try:
            result = run(args, Path(tmp))
        except BenchError as exc:
            print(f"bench/edge.py: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench/edge.py: interrupted", file=sys.stderr)
            return 130
    print(summary(result), flush=True)
    print_json_line(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
