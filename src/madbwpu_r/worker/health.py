"""A worker's own health endpoint, for probes that cannot see inside the process.

An API or edge answers HTTP anyway; a worker does not, so a Kubernetes liveness or readiness
probe (or any supervisor on another machine) needs this small server, started by
`madbwpu-r worker --health-listen HOST:PORT`:

- `GET /healthz`: 200 while the worker runs and has shown a pulse within `stall_after`
  seconds (a claim round, or a lease renewal while a long job runs); 503 once its run loop
  returned or stalled, so the probe restarts a wedged process.
- `GET /v1/heartbeat`: 200 when the queue answers a depth read (the same figure the
  supervisor and KEDA scale on), 503 with the error when it does not; the body also carries
  the worker's name and its processed / failed counts.

It runs in a daemon thread on the standard library's threading HTTP server: two routes that
must keep answering while the worker's own threads are busy, with nothing shared with them
but a few counters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from madbwpu_r.queue.errors import QueueError
from madbwpu_r.worker.runner import Worker

__all__ = ["HealthServer"]


class HealthServer:
    """Serves /healthz and /v1/heartbeat for one worker until close()."""

    def __init__(
        self,
        host: str,
        port: int,
        worker: Worker,
        depth: Callable[[], Any],
        *,
        stall_after: float = 60.0,
    ) -> None:
        self.worker = worker
        self.name = worker.name
        self._depth = depth
        self.stall_after = stall_after
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.name}-health", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- the two answers --------------------------------------------------------------------

    def liveness(self) -> tuple[int, dict[str, Any]]:
        if self.worker.finished:
            return 503, {"status": "stopped", "worker": self.name}
        last = self.worker.last_round
        if last is None:
            return 200, {"status": "starting", "worker": self.name}
        idle = time.monotonic() - last
        if idle > self.stall_after:
            return 503, {"status": "stalled", "worker": self.name, "seconds": round(idle, 1)}
        return 200, {"status": "ok", "worker": self.name}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {
            "worker": self.name,
            "processed": self.worker.processed,
            "failed": self.worker.failed,
        }
        try:
            depth = self._depth()
        except QueueError as exc:
            return 503, {**body, "status": "unhealthy", "queue": {"ok": False, "error": str(exc)}}
        queue = {
            "ok": True,
            "ready": depth.ready,
            "in_flight": depth.in_flight,
            "scheduled": depth.scheduled,
            "dead": depth.dead,
        }
        return 200, {**body, "status": "ok", "queue": queue}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path == "/healthz":
                    self._send(*server.liveness())
                elif self.path == "/v1/heartbeat":
                    self._send(*server.readiness())
                else:
                    self._send(404, {"status": 404, "title": "Not Found"}, "problem+json")

            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET()

            def _send(self, status: int, body: dict[str, Any], kind: str = "json") -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", f"application/{kind}")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds: not worth a log line each

        return Handler
