"""Scaling benchmark: misses through the edge with 1 vs 2 API processes, drain with 1 vs 2 workers.

    uv run python bench/scale.py [--rounds 2] [--duration 8] [--connections 32] [--jobs 200]

1. Rows pages on cache misses: one dataset (`--rows` rows) is ingested, then for each side
   (1 API, 2 APIs) a fresh edge with `--origin` for each API takes `wrk` load for `--duration`
   seconds where every request is a different query (`id__gte=A&id__lt=B`, unique per
   request, so every one is a miss forwarded to an API). Requests/s, p50/p99, non-2xx.
2. Queue drain: `--jobs` small ingests are accepted while no worker runs, then 1 (or 2) worker
   processes start and the clock runs until the queue holds nothing ready or in flight (read
   from the API's heartbeat every 20 ms); jobs/s, and every job must have succeeded.

Sides alternate each round (1, 2, then 2, 1); medians. Scaling efficiency of a step is
(rate with 2) / (rate with 1) / 2: 1.0 is linear. This machine has 2 cores and the load
generator, the edge and the processes measured share them, so 2 processes cannot double a
CPU-bound rate here: read the efficiency as an upper bound of what one machine shows. Prints
the load average before and after; the last line is one JSON object with every figure.

Everything binds to 127.0.0.1 on free ports under a temp dir (SQLite store and queue: the
embedded engines), every load is bounded in time, and every process started is killed on
exit, even on error or Ctrl-C. Needs `wrk` (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import alternating, load_average, median, print_json_line, say  # noqa: E402
from edge import WrkResult, parse_wrk  # noqa: E402

from madbwpu_r.config import load_or_create_secrets  # noqa: E402

CLI = [sys.executable, "-m", "madbwpu_r"]
ENV = "staging"

# Each wrk thread numbers its own requests and interleaves with the others, so no two
# requests of a run (or of two runs: `run` offsets them) ask for the same page.
WRK_SCRIPT = """
local threads, offset = 0, tonumber(os.getenv("SCALE_OFFSET") or "0")
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local k = offset + n * 64 + tid
  local a = k %% %(rows)d
  local b = a + 1 + math.floor(k / %(rows)d)
  return wrk.format("GET", "/v1/datasets/bench/rows?_limit=20&id__gte=" .. a .. "&id__lt=" .. b)
end
"""


class BenchError(Exception):
    """A step could not run; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Procs:
    """Every process the benchmark starts, stopped on exit whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([*CLI, *args], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc)


def wait_http(http: httpx.Client, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if http.get(url).status_code == 200:
                return
        time.sleep(0.05)
    raise BenchError(f"{url} did not answer 200 within {timeout:.0f} s")


def write_tokens(data: Path) -> dict[str, str]:
    try:
        return load_or_create_secrets(data, ENV)  # type: ignore[call-arg]
    except TypeError:  # one set of tokens for every environment
        return load_or_create_secrets(data)


def queue_empty(http: httpx.Client, api: str) -> bool:
    queue = http.get(f"{api}/v1/heartbeat").json()["checks"]["queue"]
    return queue["ready"] + queue["in_flight"] + queue["scheduled"] == 0


def run_wrk(url: str, script: Path, args: argparse.Namespace, offset: int) -> WrkResult:
    wrk = shutil.which("wrk")
    if not wrk:
        raise BenchError("wrk not found: apt-get install -y wrk")
    argv = [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    argv += ["-s", str(script), url]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=args.duration + 30,
            env={"SCALE_OFFSET": str(offset), "PATH": "/usr/bin:/bin"},
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish in {args.duration + 30} s") from None
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8, help="wrk seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rows", type=int, default=5000, help="rows of the dataset read")
    parser.add_argument("--jobs", type=int, default=200, help="ingest jobs drained per run")
    args = parser.parse_args()
    result: dict[str, object] = {"load_before": load_average(), "cores": 2}
    say("load average before:", result["load_before"])
    with tempfile.TemporaryDirectory(prefix="madbwpu-scale-") as tmp, run_all(Path(tmp)) as ctx:
        procs, data, http = ctx
        tokens = write_tokens(data)
        write = {"Authorization": f"Bearer {tokens['write_token']}", "Content-Type": "text/csv"}
        common = ["--data-dir", str(data), "--env", ENV]
        apis = []
        for i in range(2):
            port = free_port()
            procs.start(f"api-{i}", "api", *common, "--listen", f"127.0.0.1:{port}")
            apis.append(f"http://127.0.0.1:{port}")
        for api in apis:
            wait_http(http, f"{api}/v1/heartbeat")
        worker_args = ["worker", *common, *(a for api in apis for a in ("--api", api))]

        def drain(workers: int, tag: str) -> float:
            """Accept the jobs with no worker running, then time `workers` draining them."""
            for i in range(args.jobs):
                body = f"id,value\n{i},{tag}\n".encode()
                accepted = http.post(
                    f"{apis[0]}/v1/datasets/q{tag}{i}/ingest", content=body, headers=write
                )
                if accepted.status_code != 202:
                    raise BenchError(f"ingest refused: {accepted.status_code} {accepted.text}")
            started = time.perf_counter()
            running = [procs.start(f"worker-{tag}-{w}", *worker_args) for w in range(workers)]
            deadline = started + 300
            while not queue_empty(http, apis[0]):
                if time.perf_counter() > deadline:
                    raise BenchError(f"{args.jobs} jobs not drained in 300 s")
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            for proc in running:
                procs.stop(proc)
            dead = http.get(f"{apis[0]}/v1/heartbeat").json()["checks"]["queue"]["dead"]
            if dead:
                raise BenchError(f"{dead} jobs failed")
            return args.jobs / elapsed

        # The dataset every read asks for.
        rows = "".join(f"{i},name-{i},{i % 97}\n" for i in range(args.rows))
        accepted = http.post(
            f"{apis[0]}/v1/datasets/bench/ingest", content=f"id,name,score\n{rows}", headers=write
        )
        if accepted.status_code != 202:
            raise BenchError(f"ingest refused: {accepted.status_code} {accepted.text}")
        loader = procs.start("worker-load", *worker_args)
        deadline = time.monotonic() + 120
        status_url = apis[0] + "/v1/jobs/" + accepted.json()["job_id"]
        while http.get(status_url).json()["status"] != "succeeded":
            if time.monotonic() > deadline:
                raise BenchError("the dataset was not ingested in 120 s")
            time.sleep(0.05)
        procs.stop(loader)

        script = data.parent / "unique.lua"
        script.write_text(WRK_SCRIPT % {"rows": args.rows})
        reads: dict[int, list[WrkResult]] = {1: [], 2: []}
        offset = 0
        for r, side in alternating(("1", "2"), args.rounds):
            n = int(side)
            port = free_port()
            origins = [a for api in apis[:n] for a in ("--origin", api)]
            edge = procs.start(f"edge-{r}-{n}", "edge", *origins, "--listen", f"127.0.0.1:{port}")
            edge_url = f"http://127.0.0.1:{port}"
            wait_http(http, f"{edge_url}/healthz")
            offset += 10_000_000
            res = run_wrk(edge_url, script, args, offset)
            procs.stop(edge)
            say(
                f"round {r + 1}: {n} API: {res.requests_per_s:.0f} req/s (misses), "
                f"p50 {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms, non-2xx {res.non_2xx}"
            )
            reads[n].append(res)
        drains: dict[int, list[float]] = {1: [], 2: []}
        for r, side in alternating(("1", "2"), args.rounds):
            rate = drain(int(side), f"r{r}w{side}x")
            say(f"round {r + 1}: {side} worker(s): {rate:.1f} jobs/s")
            drains[int(side)].append(rate)

    for n in (1, 2):
        result[f"miss_rps_{n}_api"] = median(x.requests_per_s for x in reads[n])
        result[f"miss_p99_ms_{n}_api"] = median(x.p99_ms for x in reads[n])
        result[f"miss_errors_{n}_api"] = sum(x.non_2xx + x.socket_errors for x in reads[n])
        result[f"miss_runs_{n}_api"] = [asdict(x) for x in reads[n]]
        result[f"drain_jobs_per_s_{n}_worker"] = median(drains[n])
        result[f"drain_runs_{n}_worker"] = [round(x, 2) for x in drains[n]]
    result["api_scaling_efficiency"] = _efficiency(
        result["miss_rps_1_api"], result["miss_rps_2_api"]
    )
    result["worker_scaling_efficiency"] = _efficiency(
        result["drain_jobs_per_s_1_worker"], result["drain_jobs_per_s_2_worker"]
    )
    result["load_after"] = load_average()
    say("load average after:", result["load_after"])
    say(
        f"API 1 -> 2: efficiency {result['api_scaling_efficiency']}; "
        f"workers 1 -> 2: efficiency {result['worker_scaling_efficiency']}"
    )
    print_json_line(result)


def _efficiency(one: object, two: object) -> float | None:
    if not isinstance(one, float | int) or not isinstance(two, float | int) or not one:
        return None
    return round(two / one / 2, 3)


@contextlib.contextmanager
def run_all(tmp: Path) -> Iterator[tuple[Procs, Path, httpx.Client]]:
    logs = tmp / "logs"
    logs.mkdir()
    procs = Procs(logs)
    http = httpx.Client(timeout=30)
    try:
        yield procs, tmp / "data", http
    except BenchError as exc:
        say(f"error: {exc} (logs: {logs})")
        raise SystemExit(1) from None
    finally:
        http.close()
        procs.stop_all()


if __name__ == "__main__":
    main()
