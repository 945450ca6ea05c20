"""Queue depth gauges, scraped through prometheus_client like /metrics does."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from madbwpu_r.queue import open_queue
from madbwpu_r.queue.metrics import QueueCollector


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_depth_gauges_per_queue(tmp_path: Path) -> None:
    url = "sqlite:///" + str((tmp_path / "state.sqlite").resolve())
    q = open_queue(url)
    try:
        for i in range(3):
            q.enqueue("ingest", {"task": "noop", "i": i})
        q.enqueue("ingest", {"task": "later"}, delay=3600)
        (job,) = q.claim(["ingest"], n=1)
        q.nack(job, "boom", retry=False)
        q.claim(["ingest"], n=1)
        q.announce("ingest-1", ["ingest"], ttl=60)
        q.announce("ingest-2", ["ingest"], ttl=60)

        registry = CollectorRegistry()
        registry.register(QueueCollector(lambda: open_queue(url), ["ingest", "derive"]))
        got = scrape(registry)
    finally:
        q.close()
    assert got['madbwpu_r_queue_ready{queue="ingest"}'] == 1
    assert got['madbwpu_r_queue_in_flight{queue="ingest"}'] == 1
    assert got['madbwpu_r_queue_scheduled{queue="ingest"}'] == 1
    assert got['madbwpu_r_queue_dead{queue="ingest"}'] == 1
    assert got['madbwpu_r_queue_oldest_ready_age_seconds{queue="ingest"}'] >= 0
    assert got['madbwpu_r_queue_ready{queue="derive"}'] == 0
    assert got['madbwpu_r_queue_workers{queue="ingest"}'] == 2
    assert got['madbwpu_r_queue_workers{queue="derive"}'] == 0
    assert got["madbwpu_r_queue_up"] == 1


def test_unreachable_queue_does_not_fail_the_scrape() -> None:
    def broken() -> object:
        raise OSError("down")

    registry = CollectorRegistry()
    registry.register(QueueCollector(broken, ["ingest"]))
    got = scrape(registry)
    assert got["madbwpu_r_queue_up"] == 0
    assert 'madbwpu_r_queue_ready{queue="ingest"}' not in got
