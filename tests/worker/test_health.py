"""The worker's health endpoint: liveness follows the run loop, readiness the queue."""

from __future__ import annotations

import threading
import time

import httpx

from madbwpu_r.queue import open_queue
from madbwpu_r.worker.health import HealthServer
from madbwpu_r.worker.runner import Worker


def test_liveness_follows_the_run_loop_and_readiness_the_queue(tmp_path):
    queue = open_queue(f"sqlite:///{tmp_path / 'q.sqlite'}")
    worker = Worker(queue, {"ingest": lambda job: None}, poll_interval=0.05, install_signals=False)
    health = HealthServer("127.0.0.1", 0, worker, lambda: queue.depth("ingest")).start()
    base = f"http://127.0.0.1:{health.port}"
    http = httpx.Client(timeout=5)
    thread = threading.Thread(target=worker.run)
    try:
        assert http.get(f"{base}/healthz").json()["status"] == "starting"
        worker.last_round = time.monotonic() - 120  # as if its loop had hung for 2 minutes
        stalled = http.get(f"{base}/healthz")
        assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"

        thread.start()
        queue.enqueue("ingest", {"n": 1})
        deadline = time.monotonic() + 30
        while worker.processed < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        live = http.get(f"{base}/healthz")
        assert live.status_code == 200 and live.json() == {"status": "ok", "worker": worker.name}
        ready = http.get(f"{base}/v1/heartbeat")
        assert ready.status_code == 200 and ready.headers["cache-control"] == "no-store"
        assert ready.json()["queue"]["ok"] is True and ready.json()["processed"] == 1

        worker.stop()
        thread.join(10)
        stopped = http.get(f"{base}/healthz")
        assert stopped.status_code == 503 and stopped.json()["status"] == "stopped"
        assert http.get(f"{base}/nope").status_code == 404

        queue.close()  # the queue no longer answers: not ready, with the reason
        down = http.get(f"{base}/v1/heartbeat")
        assert down.status_code == 503
        assert down.json()["status"] == "unhealthy" and down.json()["queue"]["ok"] is False
    finally:
        worker.stop()
        if thread.is_alive():
            thread.join(10)
        health.close()
        http.close()
