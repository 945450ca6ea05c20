"""Queue depth as Prometheus gauges, read at scrape time so they are never stale.

The same figures drive the local Supervisor and, scaled out, a KEDA/HPA external metric:
alert on `madbwpu_r_queue_oldest_ready_age_seconds` and `madbwpu_r_queue_dead`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["QueueCollector"]

log = logging.getLogger(__name__)

_GAUGES = (
    ("ready", "ready", "Jobs waiting to be claimed."),
    ("in_flight", "in_flight", "Jobs claimed by a worker and not yet acked."),
    ("scheduled", "scheduled", "Jobs delayed or backing off before a retry."),
    ("dead", "dead", "Jobs that exhausted their attempts (dead-letter queue)."),
    (
        "oldest_ready_age_seconds",
        "oldest_ready_age",
        "Age of the oldest ready job; grows when workers cannot keep up.",
    ),
)
_WORKERS_DOC = "Worker processes whose presence the queue holds (announced, not expired)."


class QueueCollector(Collector):
    """Per-queue depth gauges plus the number of workers serving each queue.

    `queue` is a Queue (shared by every scrape) or a factory such as
    `lambda: open_queue(url)`, called once per scraping thread, for adapters whose
    connections must not cross threads (SQLite). Workers are those whose presence the queue
    holds (`Queue.workers`): every worker process, wherever it runs, announces itself there.
    """

    def __init__(
        self,
        queue: Any,
        queues: Iterable[str],
        namespace: str = "madbwpu_r_queue",
    ) -> None:
        self._queue = queue
        self._factory = callable(queue) and not hasattr(queue, "depth")
        self._local = threading.local()
        self.queues = list(queues)
        self.namespace = namespace

    def _get_queue(self) -> Any:
        if not self._factory:
            return self._queue
        queue = getattr(self._local, "queue", None)
        if queue is None:
            queue = self._local.queue = self._queue()
        return queue

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Declared without values so registering the collector does not touch the queue.
        for name, _, doc in _GAUGES:
            yield GaugeMetricFamily(f"{self.namespace}_{name}", doc, labels=["queue"])
        yield GaugeMetricFamily(f"{self.namespace}_workers", _WORKERS_DOC, labels=["queue"])
        yield GaugeMetricFamily(f"{self.namespace}_up", "1 if the queue answered the scrape.")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            attr: GaugeMetricFamily(f"{self.namespace}_{name}", doc, labels=["queue"])
            for name, attr, doc in _GAUGES
        }
        workers = GaugeMetricFamily(f"{self.namespace}_workers", _WORKERS_DOC, labels=["queue"])
        up = 1
        try:
            queue = self._get_queue()
            for name in self.queues:
                depth = queue.depth(name)
                for attr, family in families.items():
                    family.add_metric([name], float(getattr(depth, attr)))
                workers.add_metric([name], float(queue.workers(name)))
        except Exception as exc:
            # A scrape must not fail because the queue is down: report it as a gauge instead.
            log.warning("queue depth unavailable for metrics", extra={"error": str(exc)})
            up = 0
            self._local.queue = None
        yield from families.values()
        yield workers
        yield GaugeMetricFamily(
            f"{self.namespace}_up", "1 if the queue answered the scrape.", value=up
        )
