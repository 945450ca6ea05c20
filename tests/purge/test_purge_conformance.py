"""The Purger port's contract, run on every backend (HTTP fan-out, Redis pub/sub)."""

from __future__ import annotations

import asyncio

import orjson

from madbwpu_r.purge import PurgeReport, open_purger
from tests.edge.conftest import TOKEN


def _cache(deployment, origin, uniq, name: str, key: str) -> str:
    path = f"{uniq}/{name}"
    origin.route(path, headers={"Cache-Control": "max-age=300", "Surrogate-Key": key})
    for edge in deployment.edges:
        edge.get(path)
        assert edge.get(path).headers["x-cache"] == "HIT"
    return path


def test_purge_by_key_reaches_every_edge_and_spares_other_keys(deployment, origin, uniq, wait_for):
    a = _cache(deployment, origin, uniq, "a", f"{uniq}:a")
    b = _cache(deployment, origin, uniq, "b", f"{uniq}:b")
    report = deployment.purger().purge(keys=[f"{uniq}:a"])
    assert isinstance(report, PurgeReport) and report.ok and report.seq == 1
    wait_for(lambda: all(e.stats()["purged"] == 1 for e in deployment.edges))
    for edge in deployment.edges:
        assert edge.get(a).headers["x-cache"] == "MISS"
        assert edge.get(b).headers["x-cache"] == "HIT"
    if deployment.backend == "http":
        assert report.purged == 2 and report.unreachable == report.failed == []
        assert report.published is None
    else:
        assert report.published == {"ok": True, "receivers": 2} and report.edges == {}


def test_apurge_by_url_from_async_code(deployment, origin, uniq, wait_for):
    path = _cache(deployment, origin, uniq, "u", f"{uniq}:u")
    report = asyncio.run(deployment.purger().apurge(urls=[path]))
    assert report.ok
    wait_for(lambda: all(e.stats()["purged"] == 1 for e in deployment.edges))
    assert {e.get(path).headers["x-cache"] for e in deployment.edges} == {"MISS"}


def test_purges_are_numbered_in_order_under_one_epoch(deployment):
    purger = deployment.purger(epoch="fixed-epoch")
    first = purger.purge(keys=["k1"])
    second = asyncio.run(purger.apurge(keys=["k2"]))
    assert (first.epoch, first.seq, second.epoch, second.seq) == (
        "fixed-epoch",
        1,
        "fixed-epoch",
        2,
    )
    # The report is what the API returns in JSON.
    assert orjson.loads(orjson.dumps(second))["seq"] == 2
    # No edge saw a gap: nothing was dropped.
    assert all(e.stats()["drops"] == 0 for e in deployment.edges)


def test_an_unreachable_target_is_reported_never_raised(deployment):
    dead = deployment.dead_target()
    nowhere = open_purger([dead], token=TOKEN, channel=deployment.channel, timeout=2)
    for report in (nowhere.purge(keys=["k"]), asyncio.run(nowhere.apurge(urls=["/x"]))):
        assert not report.ok
        if deployment.backend == "http":
            assert report.unreachable == [dead] and report.failed == [dead]
        else:
            assert report.published is not None and report.published["ok"] is False
            assert "error" in report.published


def test_a_callers_own_sequence_is_sent_as_is(deployment, origin, uniq, wait_for):
    """An outbox row's durable (epoch, seq): delivered twice after a crash, it is one purge."""
    path = _cache(deployment, origin, uniq, "seq", f"{uniq}:seq")
    purger = deployment.purger()
    first = purger.purge(keys=[f"{uniq}:seq"], sequence=("outbox-epoch", 1))
    again = asyncio.run(purger.apurge(keys=[f"{uniq}:seq"], sequence=("outbox-epoch", 1)))
    assert (first.epoch, first.seq, again.seq) == ("outbox-epoch", 1, 1)
    assert purger.seq == 0  # the purger's own numbering is untouched
    wait_for(lambda: all(e.stats()["purges"] == 2 for e in deployment.edges))
    assert all(e.stats()["drops"] == 0 for e in deployment.edges)  # a duplicate, not a gap
    assert {e.get(path).headers["x-cache"] for e in deployment.edges} == {"MISS"}
    assert first.as_dict()["ok"] is True and first.as_dict()["seq"] == 1
