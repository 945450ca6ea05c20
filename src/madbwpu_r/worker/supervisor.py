"""Local autoscaler: keeps between min and max worker processes per queue, sized by queue depth.

It is the one-machine counterpart of a KEDA ScaledObject: a thread in the `madbwpu-r up`
process polls the queue's depth, decides how many workers each queue needs with the pure
`desired_workers`, starts them as subprocesses, stops surplus ones with SIGTERM (the Worker
finishes or releases its job) and restarts any that die. A worker that dies has its leases
ended at once (`Queue.expire_leases`), so its job runs again within a poll interval instead of
after the lease; the queue's fencing receipts keep that safe. Its state goes to a JSON file
for its own needs only (a restarted supervisor stops the workers its killed predecessor left);
other processes count workers through the queue, where every worker announces itself.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson

from madbwpu_r.process import die_with_parent

__all__ = [
    "QUEUE_ENV",
    "WORKER_NAME_ENV",
    "ScalingPolicy",
    "Supervisor",
    "desired_workers",
    "pid_alive",
    "read_status",
]

log = logging.getLogger(__name__)

QUEUE_ENV = "MADBWPU_R_WORKER_QUEUES"
"""Set in each worker's environment: the queue (comma separated if several) it must consume."""
WORKER_NAME_ENV = "MADBWPU_R_WORKER_NAME"
"""Set in each worker's environment: a stable, unique consumer name such as `ingest-3`."""


class _Depth(Protocol):
    ready: int
    in_flight: int
    scheduled: int
    dead: int
    oldest_ready_age: float


@dataclass(frozen=True)
class ScalingPolicy:
    """How many workers a queue gets; one policy applies to each supervised queue."""

    min_workers: int = 1
    max_workers: int = 4
    jobs_per_worker: int = 20
    """Backlog (ready + in flight) one worker is expected to absorb; more starts another."""
    max_ready_age: float = 30.0
    """Oldest ready job older than this (seconds) adds a worker even if the backlog is small."""
    cooldown: float = 30.0
    """Seconds demand must stay below the current count before scaling down (no flapping)."""
    interval: float = 1.0
    """Seconds between two depth polls."""
    stop_timeout: float = 60.0
    """Seconds a SIGTERMed worker gets to finish its job before SIGKILL (its lease re-runs it)."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError("need 0 <= min_workers <= max_workers")
        if self.max_workers < 1 or self.jobs_per_worker < 1:
            raise ValueError("max_workers and jobs_per_worker must be at least 1")
        if self.cooldown < 0 or self.interval <= 0 or self.stop_timeout <= 0:
            raise ValueError("cooldown must be >= 0, interval and stop_timeout > 0")


def desired_workers(depth: _Depth, current: int, policy: ScalingPolicy) -> int:
    """Workers a queue should have now. Pure: the Supervisor adds time (cooldown) around it."""
    backlog = max(0, depth.ready) + max(0, depth.in_flight)
    want = math.ceil(backlog / policy.jobs_per_worker)
    if depth.ready > 0:
        want = max(want, 1)
        if depth.oldest_ready_age > policy.max_ready_age:
            # Jobs are waiting too long although the backlog looks small: they are slow jobs.
            want = max(want, current + 1)
    return max(policy.min_workers, min(policy.max_workers, want))


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    argv: list[str]
    started_at: float
    stopping_since: float | None = None

    @property
    def consumer(self) -> str:
        """The name the worker claims jobs under: its `--name` argument, else ours for it."""
        for i, arg in enumerate(self.argv[:-1]):
            if arg == "--name":
                return self.argv[i + 1]
            if arg.startswith("--name="):
                return arg.split("=", 1)[1]
        return self.name


@dataclass
class _Pool:
    queue: str
    procs: list[_Proc] = field(default_factory=list)
    serial: int = 0
    desired: int = 0
    below_since: float | None = None
    restarts: int = 0
    quick_deaths: int = 0
    respawn_after: float = 0.0
    depth: dict[str, Any] | None = None
    last_decision: dict[str, Any] | None = None

    def active(self) -> list[_Proc]:
        return [p for p in self.procs if p.stopping_since is None]


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    netloc = user + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def read_status(path: Path) -> dict[str, Any] | None:
    """The supervisor's last written state, or None if there is none (or it is unreadable)."""
    try:
        return orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


class Supervisor:
    """Runs worker subprocesses for each queue in a background thread."""

    def __init__(
        self,
        queue_url: str,
        queues: list[str],
        command: list[str],
        env: dict[str, str] | None = None,
        policy: ScalingPolicy | None = None,
        status_path: Path | None = None,
        *,
        depth_of: Callable[[str], _Depth] | None = None,
    ) -> None:
        if not queues:
            raise ValueError("supervise at least one queue")
        if not command:
            raise ValueError("command must not be empty")
        self.queue_url = queue_url
        self.queues = list(dict.fromkeys(queues))
        self.command = list(command)
        self.env = dict(env or {})
        self.policy = policy or ScalingPolicy()
        self.status_path = Path(status_path) if status_path else None
        self._depth_of = depth_of
        self._pools = {q: _Pool(q) for q in self.queues}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: Any = None
        self._started_at = 0.0

    # -- public API -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("supervisor already started")
        self._started_at = time.time()
        if self.status_path is not None:
            _stop_orphans(self.status_path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="madbwpu-r-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker, wait up to `timeout` seconds for all, SIGKILL the rest."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.policy.interval * 2, 5.0))
            self._thread = None
        with self._lock:
            procs = [p for pool in self._pools.values() for p in pool.procs]
            for proc in procs:
                _signal(proc.popen, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("worker did not stop in time, killing", extra={"worker": proc.name})
                    _signal(proc.popen, signal.SIGKILL)
                    proc.popen.wait()
            for pool in self._pools.values():
                pool.procs.clear()
            self._write_status(running=False)
        self._close_queue()

    def worker_count(self, queue: str | None = None) -> int:
        """Live workers not being stopped, for one queue or all of them."""
        with self._lock:
            pools = [self._pools[queue]] if queue is not None else list(self._pools.values())
            return sum(1 for pool in pools for p in pool.active() if p.popen.poll() is None)

    def worker_counts(self) -> dict[str, int]:
        return {q: self.worker_count(q) for q in self.queues}

    def pids(self, queue: str) -> list[int]:
        with self._lock:
            return [p.popen.pid for p in self._pools[queue].active() if p.popen.poll() is None]

    # -- loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("supervisor tick failed")
            self._stop.wait(self.policy.interval)

    def tick(self) -> None:
        """One round: reap, read depth, scale, write status. Public for tests and embedding."""
        now = time.monotonic()
        for queue in self.queues:
            depth = self._read_depth(queue)
            with self._lock:
                if self._stop.is_set():
                    return
                self._reconcile(self._pools[queue], depth, now)
        with self._lock:
            self._write_status(running=True)

    def _read_depth(self, queue: str) -> _Depth | None:
        try:
            if self._depth_of is not None:
                return self._depth_of(queue)
            if self._queue is None:
                from madbwpu_r.queue import open_queue

                self._queue = open_queue(self.queue_url)
            return self._queue.depth(queue)
        except Exception as exc:
            log.warning("cannot read queue depth", extra={"queue": queue, "error": str(exc)})
            self._close_queue()
            return None

    def _expire_leases(self, queue: str, proc: _Proc) -> None:
        try:
            if self._queue is None:
                from madbwpu_r.queue import open_queue

                self._queue = open_queue(self.queue_url)
            ended = self._queue.expire_leases(proc.consumer, [queue])
        except Exception as exc:
            # The lease still runs out by itself; only the early re-run is lost.
            log.warning(
                "cannot end a dead worker's leases", extra={"worker": proc.name, "error": str(exc)}
            )
            self._close_queue()
            return
        if ended:
            log.info("ended a dead worker's leases", extra={"worker": proc.name, "leases": ended})

    def _close_queue(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            try:
                queue.close()
            except Exception as exc:
                log.debug("closing the queue failed", extra={"error": str(exc)})

    def _reconcile(self, pool: _Pool, depth: _Depth | None, now: float) -> None:
        self._reap(pool, now)
        current = len(pool.active())
        if depth is None:
            # Depth unknown: keep what runs, only make sure the floor holds.
            target = max(current, self.policy.min_workers)
        else:
            pool.depth = {
                "ready": depth.ready,
                "in_flight": depth.in_flight,
                "scheduled": depth.scheduled,
                "dead": depth.dead,
                "oldest_ready_age": round(depth.oldest_ready_age, 3),
            }
            target = desired_workers(depth, current, self.policy)
        if target < current:
            if pool.below_since is None:
                pool.below_since = now
            if now - pool.below_since < self.policy.cooldown:
                target = current
        else:
            pool.below_since = None
        pool.desired = target
        if target > current:
            if now < pool.respawn_after:
                return
            for _ in range(target - current):
                self._spawn(pool, now)
            self._decide(pool, current, target, depth)
        elif target < current:
            # Newest first: the oldest workers have warm caches and the longest leases running.
            for proc in pool.active()[target - current :]:
                proc.stopping_since = now
                _signal(proc.popen, signal.SIGTERM)
            pool.below_since = None
            self._decide(pool, current, target, depth)

    def _reap(self, pool: _Pool, now: float) -> None:
        alive: list[_Proc] = []
        for proc in pool.procs:
            code = proc.popen.poll()
            if code is None:
                if (
                    proc.stopping_since is not None
                    and now - proc.stopping_since > self.policy.stop_timeout
                ):
                    log.warning("worker ignored SIGTERM, killing", extra={"worker": proc.name})
                    _signal(proc.popen, signal.SIGKILL)
                alive.append(proc)
                continue
            # Dead, however it ended: what it still held is free now (a clean exit held nothing).
            self._expire_leases(pool.queue, proc)
            if proc.stopping_since is None:
                pool.restarts += 1
                # A worker that dies right after start is likely misconfigured: back off.
                quick = now - proc.started_at < 5.0
                pool.quick_deaths = pool.quick_deaths + 1 if quick else 0
                delay = min(30.0, 0.5 * 2 ** (pool.quick_deaths - 1)) if quick else 0.0
                pool.respawn_after = now + delay
                log.warning(
                    "worker exited unexpectedly",
                    extra={"worker": proc.name, "exit_code": code, "respawn_in": delay},
                )
        pool.procs = alive

    def _spawn(self, pool: _Pool, now: float) -> None:
        pool.serial += 1
        name = f"{pool.queue}-{pool.serial}"
        env = {**os.environ, **self.env, QUEUE_ENV: pool.queue, WORKER_NAME_ENV: name}
        argv = [arg.replace("{queue}", pool.queue).replace("{name}", name) for arg in self.command]
        # Own process group: a terminal's Ctrl-C reaches the supervisor, which then stops
        # the workers in order, instead of every worker at once mid-job.
        # die_with_parent: if the process running this supervisor is SIGKILLed, the workers
        # get SIGTERM, finish or release their job, and exit instead of running orphaned.
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )
        pool.procs.append(_Proc(name=name, popen=popen, argv=argv, started_at=now))
        log.info("worker started", extra={"worker": name, "pid": popen.pid})

    def _decide(self, pool: _Pool, current: int, target: int, depth: _Depth | None) -> None:
        pool.last_decision = {
            "at": round(time.time(), 3),
            "from": current,
            "to": target,
            "reason": "depth" if depth is not None else "min_workers",
            "depth": pool.depth,
        }
        log.info("scaled workers", extra={"queue": pool.queue, "from": current, "to": target})

    # -- status file ------------------------------------------------------------------------

    def _write_status(self, running: bool) -> None:
        if self.status_path is None:
            return
        state = {
            "pid": os.getpid(),
            "running": running,
            "started_at": round(self._started_at, 3),
            "updated_at": round(time.time(), 3),
            "queue_url": _redact(self.queue_url),
            "policy": asdict(self.policy),
            "queues": {
                pool.queue: {
                    "workers": len([p for p in pool.active() if p.popen.poll() is None]),
                    "desired": pool.desired,
                    "pids": [p.popen.pid for p in pool.active() if p.popen.poll() is None],
                    "argv": {
                        str(p.popen.pid): p.argv for p in pool.procs if p.popen.poll() is None
                    },
                    "stopping": [p.popen.pid for p in pool.procs if p.stopping_since is not None],
                    "restarts": pool.restarts,
                    "depth": pool.depth,
                    "last_decision": pool.last_decision,
                }
                for pool in self._pools.values()
            },
        }
        _write_atomic(self.status_path, orjson.dumps(state, option=orjson.OPT_INDENT_2))


def _write_atomic(path: Path, data: bytes) -> None:
    # Readers see the old or the new file, never half of one; no fsync: it is rewritten
    # every interval and only describes live processes.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _stop_orphans(path: Path) -> None:
    """SIGTERM workers left running by a previous supervisor that was killed.

    Workers live in their own process group, so they outlive a SIGKILLed parent. A pid is
    only signalled if its command line is still exactly the one recorded for it.
    """
    state = read_status(path) or {}
    owner = int(state.get("pid") or 0)
    if owner == os.getpid() or (state.get("running") and pid_alive(owner)):
        # Ours, or another live supervisor's: never take workers away from a running one.
        return
    for info in state.get("queues", {}).values():
        for pid, argv in (info.get("argv") or {}).items():
            try:
                cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0")[:-1]
            except (OSError, ValueError):
                continue
            if [part.decode(errors="replace") for part in cmdline] == argv:
                log.warning("stopping a worker left by a previous supervisor", extra={"pid": pid})
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except ProcessLookupError:
                    pass


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(popen: subprocess.Popen[bytes], signum: int) -> None:
    if popen.poll() is None:
        try:
            popen.send_signal(signum)
        except ProcessLookupError:
            pass
