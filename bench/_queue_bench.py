"""Queue throughput and crash recovery: our Redis Streams queue + Worker vs Dramatiq vs Celery.

    uv run --group bench python bench/queue.py [--rounds 3] [--jobs 20000] [--kill-cap 120]

Throughput: N no-op jobs are enqueued first, then 2 worker processes start; the clock runs
from just before the workers are spawned until the broker holds no ready and no unacked
message for that queue (polled every 20 ms, the same way for every side). Each side runs
with its own CLI/entry point as its users would start it. Sides rotate order every round;
medians are reported.

Recovery: one job whose first run sleeps; once it has started, its worker gets SIGKILL and a
fresh worker starts at once; the clock runs from the kill until the job starts again.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench._common import (
    alternating,
    load_average,
    median,
    print_json_line,
    ratio,
    say,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SIDES = ("ours", "dramatiq", "celery")
QUEUE = "bench"
KILL_QUEUE = "bench_kill"
POLL = 0.02
METHOD = (
    "clock from just before spawning 2 worker processes to the first poll (every 20 ms) at "
    "which the broker holds no ready and no unacked message: ours ready+in_flight+scheduled "
    "from Queue.depth, Dramatiq HLEN of its .msgs hash (deleted on ack), Celery LLEN of the "
    "queue list + HLEN of kombu's unacked hash; 'steady' starts at the first poll that sees "
    "the backlog shrink (excludes process start-up)"
)


@dataclass
class Side:
    name: str
    env: dict[str, str]
    command: list[str]
    processes: int
    enqueue: Callable[[int], None]
    remaining: Callable[[], int]
    log: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            for i in range(self.processes):
                command = [a.replace("{i}", str(i)) for a in self.command]
                self.procs.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env={**os.environ, **self.env}, stdout=log,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0,
                    )
                )  # fmt: skip

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = f"mbqbench-{os.getpid()}-{secrets.token_hex(3)}"
        self.redis_url = f"redis://127.0.0.1:{args.redis_port}/{args.redis_db}"
        self.r = redis.Redis.from_url(self.redis_url)
        self.workdir = Path(tempfile.mkdtemp(prefix="madbwpu-bench-queue-"))
        self._ours_queue: Any = None
        self.count_key = f"{self.prefix}-count"

    # ---- sides ------------------------------------------------------------------------------

    def ours_url(self) -> str:
        return f"{self.redis_url}?prefix={self.prefix}-ours"

    def ours(self, queue: str, processes: int, prefetch: int, threads: int) -> Side:
        from madbwpu_r.queue import open_queue

        if self._ours_queue is None:
            self._ours_queue = open_queue(self.ours_url(), lease=self.args.lease)
        q = self._ours_queue

        def enqueue(n: int) -> None:
            for _ in range(n):
                q.enqueue(queue, {"task": "noop"})

        def remaining() -> int:
            d = q.depth(queue)
            return d.ready + d.in_flight + d.scheduled

        command = [
            str(BIN / "python"), "-m", "bench.peers.ours_worker", "--queue-url", self.ours_url(),
            "--queue", queue, "--name", f"bench-{secrets.token_hex(2)}", "-p", str(processes),
            "--lease", str(self.args.lease), "--prefetch", str(prefetch),
            "--threads", str(threads), "--marks-url", self.redis_url,
            "--ack-interval", str(self.args.ack_interval), "--count-key", self.count_key,
        ]  # fmt: skip
        return Side("ours", {}, command, 1, enqueue, remaining, self.workdir / "ours.log")

    def dramatiq(self, queue: str) -> Side:
        env = {"BENCH_REDIS_URL": self.redis_url, "BENCH_NAMESPACE": f"{self.prefix}-dramatiq"}
        os.environ.update(env)
        from bench.peers import dramatiq_tasks

        msgs = f"{env['BENCH_NAMESPACE']}:{queue}.msgs"
        actor = dramatiq_tasks.noop if queue == QUEUE else dramatiq_tasks.sleepy

        def enqueue(n: int) -> None:
            for _ in range(n):
                actor.send()

        def remaining() -> int:
            return int(self.r.hlen(msgs))

        command = [
            str(BIN / "dramatiq"), "bench.peers.dramatiq_tasks", "-p", "2", "-t", "8",
            "-Q", queue,
        ]  # fmt: skip
        return Side("dramatiq", env, command, 1, enqueue, remaining, self.workdir / "dramatiq.log")

    def celery(self) -> Side:
        env = {"BENCH_REDIS_URL": self.redis_url, "BENCH_NAMESPACE": f"{self.prefix}-celery:"}
        os.environ.update(env)
        from bench.peers import celery_tasks

        ns = env["BENCH_NAMESPACE"]

        def enqueue(n: int) -> None:
            with celery_tasks.app.producer_or_acquire() as producer:
                for _ in range(n):
                    celery_tasks.noop.apply_async(producer=producer)

        def remaining() -> int:
            pipe = self.r.pipeline(transaction=False)
            pipe.llen(f"{ns}{QUEUE}")
            pipe.hlen(f"{ns}unacked")
            return sum(int(x) for x in pipe.execute())

        command = [
            str(BIN / "celery"), "-A", "bench.peers.celery_tasks", "worker", "-c", "2",
            "-n", f"bench-{secrets.token_hex(3)}@%h",
        ]  # fmt: skip
        return Side("celery", env, command, 1, enqueue, remaining, self.workdir / "celery.log")

    def side(self, name: str) -> Side:
        if name == "ours":
            return self.ours(QUEUE, 2, self.args.prefetch, self.args.threads)
        if name == "dramatiq":
            return self.dramatiq(QUEUE)
        return self.celery()

    # ---- throughput -------------------------------------------------------------------------

    def drain(self, name: str) -> dict[str, Any]:
        n = self.args.jobs
        side = self.side(name)
        t = time.perf_counter()
        side.enqueue(n)
        enqueue_s = time.perf_counter() - t
        backlog = side.remaining()
        if backlog != n:
            raise SystemExit(f"{name}: expected {n} queued jobs, the broker holds {backlog}")
        first: tuple[float, int] | None = None
        t0 = time.perf_counter()
        side.start()
        deadline = t0 + self.args.drain_timeout
        try:
            while True:
                left = side.remaining()
                now = time.perf_counter()
                if first is None and left < n:
                    first = (now, left)
                if left == 0:
                    break
                if now > deadline or not side.alive():
                    why = "timed out" if now > deadline else "a worker process exited"
                    say(f"  {name}: {why} with {left} jobs left; see {side.log}")
                    return {"side": name, "jobs_per_s": None, "error": why, "left": left}
                time.sleep(POLL)
        finally:
            side.stop()
        total = now - t0
        if name == "ours":
            ran = int(self.r.getset(self.count_key, 0) or 0)
            if ran < n:
                say(f"  ours: only {ran} of {n} jobs ran, yet the queue looks drained")
                return {
                    "side": name,
                    "jobs_per_s": None,
                    "error": f"{ran}/{n} ran",
                    "left": n - ran,
                }
        steady = None
        if first is not None and now > first[0]:
            steady = first[1] / (now - first[0])
        return {
            "side": name,
            "seconds": round(total, 3),
            "jobs_per_s": round(n / total, 1),
            "steady_jobs_per_s": round(steady, 1) if steady else None,
            "startup_s": round(first[0] - t0, 3) if first else None,
            "enqueue_s": round(enqueue_s, 3),
        }

    # ---- recovery after SIGKILL -------------------------------------------------------------

    def kill_rerun(self, name: str) -> dict[str, Any]:
        marker = f"{self.prefix}-marks:{name}"
        cap = self.args.kill_cap
        if name == "ours":
            make = lambda: self.ours(KILL_QUEUE, 1, 1, 1)  # noqa: E731
            self.ours(KILL_QUEUE, 1, 1, 1)
            self._ours_queue.enqueue(KILL_QUEUE, {"task": "sleepy", "marker": marker})
        else:
            make = lambda: self.dramatiq(KILL_QUEUE)  # noqa: E731
            from bench.peers import dramatiq_tasks

            make()
            dramatiq_tasks.sleepy.send(marker)
        first = make()
        first.start()
        try:
            if wait_until(lambda: self.r.llen(marker) >= 1, timeout=60.0, interval=0.05) is None:
                raise SystemExit(f"{name}: the sleepy job never started; see {first.log}")
            killed_at = time.perf_counter()
            first.stop(signal.SIGKILL)
            second = make()
            second.start()
            try:
                waited = wait_until(lambda: self.r.llen(marker) >= 2, timeout=cap, interval=0.05)
            finally:
                second.stop()
        finally:
            first.stop(signal.SIGKILL)
        if waited is None:
            return {"side": name, "rerun_s": None, "capped_at_s": cap, "shown": f">{cap:g}"}
        rerun = time.perf_counter() - killed_at
        return {"side": name, "rerun_s": round(rerun, 2), "shown": f"{rerun:.1f}"}

    # ---- housekeeping -----------------------------------------------------------------------

    def cleanup(self) -> int:
        """Delete every key of this run (ours are hash-tagged: `{prefix-ours}:...`)."""
        deleted = 0
        batch: list[bytes] = []
        for key in self.r.scan_iter(match=f"*{self.prefix}*", count=5000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += int(self.r.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(self.r.unlink(*batch))
        return deleted

    def close(self) -> None:
        if self._ours_queue is not None:
            self._ours_queue.close()
        self.cleanup()
        if self.args.keep_logs:
            say(f"worker logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {name: version(name) for name in ("dramatiq", "celery", "kombu", "redis")}
    out["redis_server"] = str(redis.Redis(port=6379).info("server").get("redis_version", "?"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (default 3)")
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per drain")
    parser.add_argument("--kill-cap", type=float, default=120.0, help="max wait for a re-run (s)")
    parser.add_argument("--no-kill", action="store_true", help="skip the SIGKILL recovery part")
    parser.add_argument("--lease", type=float, default=10.0, help="our lease (s)")
    parser.add_argument("--prefetch", type=int, default=64, help="our jobs claimed per round trip")
    parser.add_argument("--threads", type=int, default=4, help="our handler threads per process")
    parser.add_argument(
        "--ack-interval", type=float, default=0.05, help="our batched-ack window (s), 0 = per job"
    )
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--redis-db", type=int, default=11, help="Redis DB used only by the bench")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma separated subset")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s]
    if not set(sides) <= set(SIDES) or args.rounds < 1 or args.jobs < 1:
        parser.error(f"--sides from {','.join(SIDES)}; --rounds and --jobs >= 1")

    bench = Bench(args)
    try:
        bench.r.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at {bench.redis_url} is not reachable: {exc}") from None
    load_before = load_average()
    print(f"queue bench: {args.jobs} no-op jobs, 2 worker processes, {args.rounds} rounds")
    print(f"redis {bench.redis_url}, key prefix {bench.prefix}; load average before {load_before}")
    print(f"ours: Redis Streams + Worker, prefetch {args.prefetch}, threads {args.threads}, "
          f"ack_interval {args.ack_interval} s; "
          "dramatiq -p 2 -t 8; celery -c 2 (prefork, defaults)")  # fmt: skip
    print(f"method: {METHOD}")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    kills: dict[str, dict[str, Any]] = {}
    try:
        for rnd, name in alternating(sides, args.rounds):
            say(f"round {rnd + 1}: {name} ...")
            result = bench.drain(name)
            runs[name].append(result)
            print(
                f"round {rnd + 1} {name:9s} {result.get('jobs_per_s')} jobs/s "
                f"(steady {result.get('steady_jobs_per_s')}, start-up {result.get('startup_s')} s, "
                f"total {result.get('seconds')} s)"
            )
            bench.cleanup()
        if not args.no_kill:
            for name in [s for s in ("ours", "dramatiq") if s in sides]:
                say(f"SIGKILL recovery: {name} (cap {args.kill_cap:g} s) ...")
                kills[name] = bench.kill_rerun(name)
                print(f"re-run after SIGKILL {name:9s} {kills[name]['shown']} s")
                bench.cleanup()
    finally:
        bench.close()
    load_after = load_average()

    summary: dict[str, Any] = {
        "bench": "queue",
        "jobs": args.jobs,
        "rounds": args.rounds,
        "processes": 2,
        "method": METHOD,
        "ours_config": {
            "prefetch": args.prefetch,
            "threads": args.threads,
            "ack_interval": args.ack_interval,
            "lease": args.lease,
        },
        "versions": versions(),
        "load_before": load_before,
        "load_after": load_after,
    }
    for name in sides:
        rates = [r.get("jobs_per_s") for r in runs[name]]
        summary[f"{name}_jobs_per_s"] = median(rates)
        summary[f"{name}_jobs_per_s_runs"] = rates
        summary[f"{name}_steady_jobs_per_s"] = median(
            r.get("steady_jobs_per_s") for r in runs[name]
        )
        summary[f"{name}_startup_s"] = median(r.get("startup_s") for r in runs[name])
    print(f"\nmedians over {args.rounds} rounds (jobs/s, start to drained):")
    for name in sides:
        print(
            f"  {name:9s} {summary[f'{name}_jobs_per_s']}  "
            f"(steady {summary[f'{name}_steady_jobs_per_s']})"
        )
    if "ours" in sides:
        for peer in [s for s in sides if s != "ours"]:
            summary[f"ratio_vs_{peer}"] = ratio(
                summary["ours_jobs_per_s"], summary[f"{peer}_jobs_per_s"]
            )
            summary[f"steady_ratio_vs_{peer}"] = ratio(
                summary["ours_steady_jobs_per_s"], summary[f"{peer}_steady_jobs_per_s"]
            )
            print(
                f"  ours / {peer}: {summary[f'ratio_vs_{peer}']}x "
                f"(steady {summary[f'steady_ratio_vs_{peer}']}x)"
            )
    for name, kill in kills.items():
        summary[f"{name}_rerun_after_kill_s"] = kill["rerun_s"]
        summary[f"{name}_rerun_after_kill_shown"] = kill["shown"]
    if kills:
        summary["kill_cap_s"] = args.kill_cap
        print("re-run after SIGKILL: " + ", ".join(f"{n} {k['shown']} s" for n, k in kills.items()))
    print(f"load average after {load_after}")
    print_json_line(summary)


if __name__ == "__main__":
    main()
