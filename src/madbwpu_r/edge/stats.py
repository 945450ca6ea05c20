"""Counters kept as plain ints (no lock on the hit path), exported to Prometheus at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from madbwpu_r.edge.store import Store

COUNTERS = {
    "hits": "Requests answered from a fresh stored response",
    "misses": "Requests that filled the cache from the origin",
    "passes": "Requests forwarded without storing (uncacheable, hit-for-pass, unsafe methods)",
    "coalesced": "Requests that waited on another request's origin fetch",
    "coalesced_direct": "Coalesced requests answered by the protocol, without an ASGI task",
    "stale": "Stale responses served (stale-while-revalidate or stale-if-error)",
    "revalidations": "Conditional requests sent to the origin",
    "not_modified": "304 responses sent to clients from the cache",
    "origin_errors": "Origin fetches that failed (connection error or timeout)",
    "purges": "Purge requests applied",
    "purged": "Entries removed or marked stale by purges",
    "invalidations": "Entries removed because an unsafe method changed the resource",
    "refused": "Requests refused by a limit or as malformed, before reaching the origin",
    "drops": "Whole-cache drops (missed purge detected or Redis reconnect)",
    "evictions_total": "Entries evicted by the byte limit",
}


class Stats:
    __slots__ = tuple(COUNTERS)
    # One int per COUNTERS name, set in __init__; declared for the type checker.
    hits: int
    misses: int
    passes: int
    coalesced: int
    coalesced_direct: int
    stale: int
    revalidations: int
    not_modified: int
    origin_errors: int
    purges: int
    purged: int
    invalidations: int
    refused: int
    drops: int
    evictions_total: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}


class _EdgeCollector(Collector):
    def __init__(self, stats: Stats, store: Store, name: str) -> None:
        self.stats = stats
        self.store = store
        self.name = name

    def collect(self) -> Iterator[Metric]:
        labels = ["edge"]
        for counter, doc in COUNTERS.items():
            metric_name = counter.removesuffix("_total")
            family = CounterMetricFamily(f"madbwpu_edge_{metric_name}", doc, labels=labels)
            value = (
                self.store.evictions
                if counter == "evictions_total"
                else getattr(self.stats, counter)
            )
            family.add_metric([self.name], value)
            yield family
        for gauge, doc, value in (
            ("bytes", "Bytes held by stored responses (headers + body)", self.store.bytes),
            ("max_bytes", "Configured byte limit of the cache", self.store.max_bytes),
            ("entries", "Stored responses", len(self.store)),
        ):
            gauge_family = GaugeMetricFamily(f"madbwpu_edge_{gauge}", doc, labels=labels)
            gauge_family.add_metric([self.name], value)
            yield gauge_family


def make_registry(stats: Stats, store: Store, name: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_EdgeCollector(stats, store, name))
    return registry
