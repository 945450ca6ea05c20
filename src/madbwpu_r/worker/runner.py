"""Worker runner: claim jobs, run their handlers, keep their leases alive, settle them.

At-least-once: a job is acked only after its handler returned, so a worker killed mid-job
leaves the job leased until the lease expires and another worker takes it over. Handlers make
their effects idempotent by keying them on `job.id` (and `job.attempt` for per-try records).
Leases are renewed at lease/3 by a heartbeat thread for every job this worker holds, so a long
job is not re-delivered while its worker is alive; a job whose lease was lost is never acked
by us (the queue fences settle calls by claim receipt). The same heartbeat thread announces
the worker's presence to the queue (time to live: one lease), which is how the API's metrics
and `madbwpu-r status` count workers; a clean exit retires it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as _stdqueue
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from madbwpu_r.queue import Job, PermanentJobError, Queue, QueueError
from madbwpu_r.stopsignals import StopSignals

__all__ = ["Handler", "PermanentError", "Worker"]

Handler = Callable[[Job], dict[str, Any] | None]
log = logging.getLogger("madbwpu_r.worker")

# Raised by a handler when retrying cannot help; the queue's shared policy dead-letters it.
PermanentError = PermanentJobError


class Worker:
    """Runs jobs from `queues` with `handlers` chosen by `payload["task"]` (else queue name).

    prefetch: jobs claimed per round trip (held and heartbeated until run);
    concurrency: handler threads (1 = run inline in the calling thread);
    ack_interval: successful jobs are acknowledged together in one round trip, once this many
    seconds passed since the first of them finished (checked between jobs; 0 = ack each job)
    or a full prefetch batch is done. They stay leased (heartbeated) until then; a crash in
    that window re-runs them, which at-least-once handlers already tolerate.
    queues: defaults to the handler names.
    """

    def __init__(
        self,
        queue: Queue,
        handlers: dict[str, Handler],
        queues: Sequence[str] | None = None,
        lease: float = 10.0,
        name: str | None = None,
        *,
        prefetch: int = 1,
        concurrency: int = 1,
        poll_interval: float = 0.5,
        ack_interval: float = 0.05,
        install_signals: bool = True,
    ):
        if lease <= 0 or prefetch < 1 or concurrency < 1 or poll_interval <= 0 or ack_interval < 0:
            raise ValueError(
                "lease, poll_interval must be > 0; ack_interval >= 0; prefetch, concurrency >= 1"
            )
        self.queue = queue
        self.handlers = dict(handlers)
        self.queues = list(queues) if queues else sorted(self.handlers)
        self.lease = float(lease)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        # Unique even where two workers share a name (two machines, each with an `ingest-1`).
        safe = re.sub(r"[^A-Za-z0-9_.:@-]", "_", self.name)[:100]
        self.presence = f"{safe}.{uuid.uuid4().hex[:8]}"
        self.prefetch = prefetch
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.ack_interval = ack_interval
        self.install_signals = install_signals
        self.processed = 0
        self.failed = 0
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._held: dict[str, Job] = {}  # claimed and not yet settled: kept leased
        self._busy = 0  # claimed and handler not finished yet
        self._acks: list[tuple[Job, dict[str, Any] | None]] = []
        self._acks_since = 0.0
        self.last_round: float | None = None
        """monotonic time of the last claim round or lease renewal: a health probe's pulse."""
        self.finished = False

    def stop(self) -> None:
        """Ask run() to finish the jobs already started, release the rest and return."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, burst: bool = False) -> None:
        """Block until stop()/SIGTERM/SIGINT, or with burst=True until no job is ready."""
        with self._signals(), self._heartbeats():
            try:
                if self.concurrency == 1:
                    self._run_inline(burst)
                else:
                    self._run_pool(burst)
            finally:
                self._flush()
                self.finished = True

    # ---- loops ------------------------------------------------------------------------------

    def _run_inline(self, burst: bool) -> None:
        idle = _Idle(self.poll_interval)
        while not self.stopping:
            self.last_round = time.monotonic()
            self._flush()
            jobs = self._claim(self.prefetch)
            if not jobs:
                if burst and jobs is not None:
                    return
                self._stopping.wait(idle.next())
                continue
            idle.reset()
            for i, job in enumerate(jobs):
                if self.stopping:
                    self._release(jobs[i:])
                    break
                self._process(job)
                if self._ack_due():
                    self._flush()

    def _run_pool(self, burst: bool) -> None:
        todo: _stdqueue.SimpleQueue[Job | None] = _stdqueue.SimpleQueue()
        threads = [
            threading.Thread(target=self._drain, args=(todo,), name=f"{self.name}-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        capacity = self.concurrency + self.prefetch
        low_water = capacity - max(1, self.prefetch // 2)  # claim in batches, not one by one
        idle = _Idle(self.poll_interval)
        try:
            while not self.stopping:
                self.last_round = time.monotonic()
                with self._lock:
                    self._lock.wait_for(
                        lambda: self.stopping or self._busy <= low_water or self._ack_due(),
                        timeout=self.ack_interval or None,
                    )
                self._flush()
                room = capacity - self._busy
                if self.stopping or self._busy > low_water:
                    continue
                jobs = self._claim(room)
                if not jobs:
                    if burst and jobs is not None and self._busy == 0:
                        return
                    self._stopping.wait(idle.next())
                    continue
                idle.reset()
                for job in jobs:
                    todo.put(job)
        finally:
            pending = []
            with contextlib.suppress(_stdqueue.Empty):
                while True:
                    left = todo.get_nowait()
                    if left is not None:
                        pending.append(left)
            self._release(pending)
            for _ in threads:
                todo.put(None)
            for thread in threads:
                thread.join()

    def _drain(self, todo: _stdqueue.SimpleQueue[Job | None]) -> None:
        while (job := todo.get()) is not None:
            if self.stopping:
                self._release([job])
                continue
            self._process(job)

    # ---- one job ----------------------------------------------------------------------------

    def _claim(self, n: int) -> list[Job] | None:
        """Claimed jobs, or None when the queue is unreachable (the loop backs off)."""
        try:
            jobs = self.queue.claim(self.queues, n=n, lease=self.lease, consumer=self.name)
        except QueueError as exc:
            log.warning("claim failed: %s", exc, extra={"worker": self.name})
            return None
        if jobs:
            with self._lock:
                for job in jobs:
                    self._held[job.id] = job
                self._busy += len(jobs)
        return jobs

    def _process(self, job: Job) -> None:
        handler = self.handlers.get(str(job.payload.get("task"))) or self.handlers.get(job.queue)
        try:
            if handler is None:
                raise PermanentJobError(f"no handler for task {job.payload.get('task')!r}")
            result = handler(job)
        except PermanentJobError as exc:
            log.info(
                "job failed for good: %s",
                exc,
                extra={"job": job.id, "attempt": job.attempt, "worker": self.name},
            )
            self._fail(job, exc)
        except Exception as exc:
            log.warning(
                "job failed",
                exc_info=True,
                extra={"job": job.id, "attempt": job.attempt, "worker": self.name},
            )
            self._fail(job, exc)
        else:
            with self._lock:
                if not self._acks:
                    self._acks_since = time.monotonic()
                self._acks.append((job, result if isinstance(result, dict) else None))
                self._busy -= 1
                self.processed += 1
                self._lock.notify_all()

    def _ack_due(self) -> bool:
        return bool(self._acks) and (
            len(self._acks) >= self.prefetch
            or time.monotonic() - self._acks_since >= self.ack_interval
        )

    def _flush(self) -> None:
        """Acknowledge every finished job in one round trip."""
        with self._lock:
            batch, self._acks = self._acks, []
        if not batch:
            return
        try:
            done = self.queue.ack_many(batch)
        except QueueError as exc:
            done = [True] * len(batch)  # leases run out and the jobs are re-delivered
            log.warning("ack failed: %s", exc, extra={"worker": self.name})
        with self._lock:
            for (job, _), ok in zip(batch, done, strict=True):
                self._held.pop(job.id, None)
                if not ok:
                    self._lost(job)
            self._lock.notify_all()

    def _fail(self, job: Job, exc: Exception) -> None:
        try:
            ok = self.queue.fail(job, exc)
        except QueueError as exc:
            ok = True
            log.warning("nack failed: %s", exc, extra={"job": job.id, "worker": self.name})
        with self._lock:
            self._held.pop(job.id, None)
            self._busy -= 1
            self.failed += 1
            self._lock.notify_all()
        if not ok:
            self._lost(job)

    def _lost(self, job: Job) -> None:
        log.warning(
            "lease lost before settling; the job belongs to a newer claim",
            extra={"job": job.id, "attempt": job.attempt, "worker": self.name},
        )

    def _release(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            with contextlib.suppress(QueueError):
                self.queue.release(job)
            with self._lock:
                self._held.pop(job.id, None)
                self._busy -= 1
                self._lock.notify_all()

    # ---- background -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _heartbeats(self) -> Iterator[None]:
        done = threading.Event()
        thread = threading.Thread(
            target=self._beat, args=(done,), name=f"{self.name}-heartbeat", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            try:
                self.queue.retire(self.presence)
            except QueueError as exc:  # its presence runs out by itself within a lease
                log.warning("retire failed: %s", exc, extra={"worker": self.name})

    def _announce(self) -> None:
        try:
            self.queue.announce(self.presence, self.queues, ttl=self.lease)
        except QueueError as exc:
            log.warning("announce failed: %s", exc, extra={"worker": self.name})

    def _beat(self, done: threading.Event) -> None:
        self._announce()
        while not done.wait(self.lease / 3.0):
            self.last_round = time.monotonic()
            self._announce()
            with self._lock:
                jobs = list(self._held.values())
            if not jobs:
                continue
            try:
                alive = self.queue.heartbeat_many(jobs)
            except QueueError as exc:
                log.warning("heartbeat failed: %s", exc, extra={"worker": self.name})
                continue
            with self._lock:  # stop renewing what a newer claim owns; its settle will fail
                lost = [
                    j
                    for j, ok in zip(jobs, alive, strict=True)
                    if not ok and self._held.pop(j.id, None) is not None
                ]
            for job in lost:
                log.warning("lease lost", extra={"job": job.id, "worker": self.name})

    def _signals(self) -> contextlib.AbstractContextManager[object]:
        """SIGTERM/SIGINT stop the worker; the handler itself takes no lock (see stopsignals)."""
        if not self.install_signals:
            return contextlib.nullcontext()

        def on_stop(signum: int) -> None:  # called from the watcher thread, not the handler
            log.info("stopping on %s", signal.Signals(signum).name, extra={"worker": self.name})
            self.stop()

        return StopSignals(on_stop)


class _Idle:
    """Poll back-off while the queue is empty: 10 ms doubling up to poll_interval."""

    def __init__(self, ceiling: float):
        self.ceiling = ceiling
        self.delay = 0.0

    def next(self) -> float:
        self.delay = min(self.ceiling, max(0.01, self.delay * 2))
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0
