"""Deploy a release of 5 datasets x 200,000 rows while a constant-rate reader hits the production edge.

    uv run python bench/deploy.py [--datasets 5] [--rows 200000] [--rate 200] [--data-dir DIR]

Starts the whole stack on embedded defaults (in a temporary directory unless --data-dir), puts
release 1 in production, then ingests a new version of every dataset into staging, cuts release
2, has QA sign it off and deploys it with the seed's guardrail token. Meanwhile reader threads
send GET /v1/datasets/dN/rows?_limit=10 to production's edge at a fixed rate (open loop: a slow
answer does not slow the schedule). Prints the time of each pipeline step, the failed reads
(goal 0) and the readers' p50/p99 before, during and after the cutover ("during" is the cutover
step plus the second after it, when the purged keys refill). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import load_average, print_json_line, say  # noqa: E402
from madbwpu_r.config import load_or_create_secrets  # noqa: E402
from madbwpu_r.guardrail.example import SEED_TOKEN  # noqa: E402
from madbwpu_r.launcher import Stack  # noqa: E402
from madbwpu_r.release.archive import sign_off_deploy  # noqa: E402
from madbwpu_r.release.service import Releases  # noqa: E402


def csv_body(rows: int, seed: int) -> bytes:
    lines = ["id,name,value"]
    lines += [f"{i},name-{i}-{seed},{(i * 7919 + seed) % 100000}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def ingest(http: httpx.Client, api: str, token: str, name: str, body: bytes) -> None:
    r = http.post(
        f"{api}/v1/datasets/{name}/ingest",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )
    r.raise_for_status()
    while True:
        job = http.get(urljoin(api, r.json()["status_url"])).json()
        if job["status"] == "succeeded":
            return
        if job["status"] == "failed":
            raise RuntimeError(f"ingest of {name} failed: {job}")
        time.sleep(0.2)


class Reader:
    """Open-loop readers: each thread sends at its share of the rate, on a fixed schedule."""

    def __init__(self, edge: str, names: list[str], rate: float, threads: int = 4):
        self.edge, self.names = edge, names
        self.interval = threads / rate
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]
        self.stop = threading.Event()
        self.samples: list[tuple[float, float, bool]] = []  # (sent at, seconds, ok)
        self.lock = threading.Lock()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        rnd = random.Random(i)
        with httpx.Client(timeout=10) as http:
            due = time.perf_counter() + i * self.interval / len(self.threads)
            while not self.stop.is_set():
                now = time.perf_counter()
                if now < due:
                    time.sleep(due - now)
                due += self.interval
                sent = time.perf_counter()
                try:
                    r = http.get(
                        f"{self.edge}/v1/datasets/{rnd.choice(self.names)}/rows",
                        params={"_limit": 10},
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self.lock:
                    self.samples.append((sent, time.perf_counter() - sent, ok))

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def window(self, start: float, end: float) -> dict:
        picked = [s for s in self.samples if start <= s[0] < end]
        lat = sorted(s[1] for s in picked)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {
            "requests": len(picked),
            "failed": sum(not s[2] for s in picked),
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
        }


def run(args: argparse.Namespace, data_dir: Path) -> dict:
    names = [f"d{i}" for i in range(args.datasets)]
    stack = Stack(data_dir, max_workers=2)
    stack.start()
    try:
        stack.wait_ready(120)
        return measure(args, data_dir, stack.endpoints, names)
    finally:
        stack.stop()


def measure(args: argparse.Namespace, data_dir: Path, endpoints: dict, names: list[str]) -> dict:
    token = load_or_create_secrets(data_dir, "staging")["write_token"]
    http = httpx.Client(timeout=120)
    staging, production = endpoints["staging"], endpoints["production"]
    with Releases(data_dir, endpoints) as svc:
        svc.init()
        say(f"ingesting {len(names)} x {args.rows} rows into staging (release 1)")
        for n, name in enumerate(names):
            ingest(http, staging["api"], token, name, csv_body(args.rows, n))
        r1, _ = svc.cut("staging", "deployer")
        svc.decide(r1.release_id, "qa", "signoff")
        first = svc.run(svc.start(r1.release_id, "production", SEED_TOKEN, "deployer", "deploy"))
        assert first.status == "succeeded", first.to_json()
        sign_off_deploy(data_dir, svc.store, svc.keys, first.deploy_id, "compliance")
        say("ingesting new versions of every dataset (release 2)")
        for n, name in enumerate(names):
            ingest(http, staging["api"], token, name, csv_body(args.rows, 1000 + n))
        r2, _ = svc.cut("staging", "deployer")
        svc.decide(r2.release_id, "qa", "signoff")

        reader = Reader(production["edge"], names, args.rate)
        reader.start()
        time.sleep(args.phase)
        marks: dict[str, list[float]] = {}

        def listen(deploy, step, record) -> None:
            marks.setdefault(step, []).append(time.perf_counter())

        say(f"deploying release 2 while reading at {args.rate}/s through production's edge")
        started = time.perf_counter()
        second = svc.run(
            svc.start(r2.release_id, "production", SEED_TOKEN, "deployer", "deploy"),
            listener=listen,
        )
        ended = time.perf_counter()
        time.sleep(args.phase)
        reader.finish()
    http.close()
    assert second.status == "succeeded", second.to_json()
    steps = {k: round(v[-1] - v[0], 3) for k, v in marks.items() if len(v) >= 2}
    cut_start, cut_end = marks["cutover"][0], marks["cutover"][-1]
    return {
        "bench": "deploy",
        "datasets": len(names),
        "rows_per_dataset": args.rows,
        "rate_per_s": args.rate,
        "deploy_seconds": round(ended - started, 3),
        "step_seconds": steps,
        "failed_requests": sum(not s[2] for s in reader.samples),
        "requests": len(reader.samples),
        "before": reader.window(started - args.phase, started),
        "during_cutover": reader.window(cut_start, cut_end + 1.0),
        "after": reader.window(ended, ended + args.phase),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=200.0, help="reads per second (all threads)")
    parser.add_argument(
        "--phase", type=float, default=5.0, help="seconds of reads before and after"
    )
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    say(f"load average before: {load_average()}")
    if args.data_dir:
        result = run(args, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="madbwpu-r-bench-") as tmp:
            result = run(args, Path(tmp))
    for step, seconds in result["step_seconds"].items():
        say(f"  {step:14s} {seconds:8.3f} s")
    for phase in ("before", "during_cutover", "after"):
        w = result[phase]
        say(
            f"  {phase:15s} {w['requests']:6d} reads, {w['failed']} failed, p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms"
        )
    say(f"  failed requests: {result['failed_requests']} of {result['requests']}")
    print_json_line(result)


if __name__ == "__main__":
    main()
