"""open_purger: the backend by URL scheme, one numbering over all, clear errors."""

from __future__ import annotations

import pytest

from madbwpu_r.purge import PurgeConfigError, PurgeMessage, open_purger
from madbwpu_r.purge.fanout import FanOutPurger
from madbwpu_r.purge.http import HttpPurger
from madbwpu_r.purge.redis import RedisPurger
from tests.edge.conftest import TOKEN, redis_url_or_skip
from tests.edge.test_edge_purge import _wait_for


def test_backends_are_chosen_by_scheme():
    assert isinstance(open_purger(["http://a:1", "https://b"]), HttpPurger)
    assert isinstance(open_purger(["redis://127.0.0.1:6379/0"]), RedisPurger)
    both = open_purger(["http://a:1", "redis://127.0.0.1:6379/0"], epoch="e")
    assert isinstance(both, FanOutPurger) and both.epoch == "e"
    nobody = open_purger([])
    report = nobody.purge(keys=["k"])
    assert report.ok and report.edges == {} and report.published is None


def test_an_unknown_scheme_is_a_clear_error():
    with pytest.raises(PurgeConfigError, match="unknown purge target scheme"):
        open_purger(["ftp://edge"])


def test_a_missing_driver_gives_its_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import madbwpu_r.purge as purge_registry

    monkeypatch.setitem(purge_registry._SCHEMES, "redis", ("redis", "no_such_driver", "uv add x"))
    with pytest.raises(PurgeConfigError, match="the redis purger needs .* run `uv add x`"):
        open_purger(["redis://127.0.0.1:6379/0"])


def test_the_message_is_the_edges_own_type():
    from madbwpu_r.edge import admin, subscriber

    assert admin.PurgeMessage is PurgeMessage is subscriber.PurgeMessage
    message = PurgeMessage(keys=["a"], epoch="e", seq=3)
    assert PurgeMessage.model_validate_json(message.body()) == message
    with pytest.raises(ValueError):
        PurgeMessage.model_validate_json(b'{"keys": ["a"], "surprise": 1}')


def test_http_and_redis_together_share_one_numbering(origin, make_edge, uniq):
    redis_url = redis_url_or_skip()
    channel = f"madbwpu-r-test:fan:{uniq}"
    subscribed = make_edge(origin.url, "--redis-url", redis_url, "--redis-channel", channel)
    plain = make_edge(origin.url, name="plain")
    _wait_for(lambda: subscribed.stats()["redis"]["connected"])
    path = f"{uniq}/both"
    origin.route(path, headers={"Cache-Control": "max-age=300", "Surrogate-Key": "bk"})
    for edge in (subscribed, plain):
        edge.get(path)
    # The subscribed edge hears it twice (HTTP and Redis): the duplicate is harmless.
    purger = open_purger([subscribed.url, plain.url, redis_url], token=TOKEN, channel=channel)
    report = purger.purge(keys=["bk"])
    assert report.ok and report.published == {"ok": True, "receivers": 1}
    assert sorted(report.edges) == sorted([subscribed.url, plain.url])
    _wait_for(lambda: subscribed.stats()["purges"] == 2)
    assert subscribed.stats()["drops"] == 0
    for edge in (subscribed, plain):
        assert edge.get(path).headers["x-cache"] == "MISS"
