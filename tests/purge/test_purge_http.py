"""What only the HTTP fan-out can tell: per-edge outcomes, refusals, and a missed purge."""

from __future__ import annotations

from madbwpu_r.purge import open_purger
from madbwpu_r.purge.http import HttpPurger
from tests.edge.conftest import TOKEN


def test_a_refused_purge_is_failed_not_unreachable(origin, make_edge):
    edge = make_edge(origin.url)
    refused = open_purger([edge.url], token="wrong").purge(keys=["k"])
    assert refused.failed == [edge.url] and refused.unreachable == []
    assert refused.edges[edge.url]["status"] == 403
    assert edge.stats()["purges"] == 0


def test_a_node_that_missed_a_purge_drops_its_cache(origin, make_edge, uniq):
    e1, e2 = make_edge(origin.url, name="e", count=2)
    paths = [f"{uniq}/{i}" for i in range(3)]
    for i, path in enumerate(paths):
        origin.route(path, headers={"Cache-Control": "max-age=300", "Surrogate-Key": f"k{i}"})
        e1.get(path), e2.get(path)
    both = HttpPurger([e1.url, e2.url], token=TOKEN)
    both.purge(keys=["k0"])
    # e2 is unreachable for the next purge (simulated: the message only reaches e1) ...
    only_e1 = HttpPurger([e1.url], token=TOKEN, epoch=both.epoch)
    only_e1.seq = both.seq
    only_e1.purge(keys=["k1"])
    both.seq = only_e1.seq
    assert e2.get(paths[1]).headers["x-cache"] == "HIT"  # stale knowledge, until ...
    # ... the next purge shows e2 a gap in the sequence: it drops everything.
    report = both.purge(keys=["nothing-cached-under-this-key"])
    assert report.edges[e2.url]["dropped"] >= 2
    assert report.edges[e1.url]["dropped"] == 0
    assert e2.get(paths[1]).headers["x-cache"] == "MISS"
    assert e2.get(paths[2]).headers["x-cache"] == "MISS"
    assert e1.get(paths[2]).headers["x-cache"] == "HIT"
    assert e2.stats()["drops"] == 1


def test_keys_also_go_in_xkey_headers_for_varnish():
    purger = HttpPurger(["http://varnish.invalid"], token="t")
    message = purger._next(["dataset:a", "version:b"], [], soft=True)
    headers = purger._headers(message)
    assert headers["xkey-softpurge"] == "dataset:a version:b"
    assert headers["Authorization"] == "Bearer t"
    assert "xkey-purge" not in headers
