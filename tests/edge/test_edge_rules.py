"""RFC 9111 rules as pure functions, and the store / purge bookkeeping, in process."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from madbwpu_r.edge.entry import Entry
from madbwpu_r.edge.purge import Generations, Sequencer, url_key
from madbwpu_r.edge.rules import (
    corrected_initial_age,
    etag_matches,
    freshness_lifetime,
    http_date,
    parse_cache_control,
    parse_http_date,
    response_policy,
)
from madbwpu_r.edge.store import Store, secondary_key, vary_fields
from madbwpu_r.purge.message import PurgeMessage

NOW = 1_800_000_000.0


def policy(headers: dict[str, str], status: int = 200, auth: bool = False, request_cc=None):
    fields = {k.lower().encode(): v.encode() for k, v in headers.items()}
    return response_policy("GET", status, fields, request_cc or {}, auth, response_time=NOW)


def test_cache_control_parsing():
    cc = parse_cache_control(b'Max-Age=60, no-cache="Set-Cookie, X", public')
    assert cc == {"max-age": "60", "no-cache": "Set-Cookie, X", "public": None}
    assert parse_cache_control("max-age=60, max-age=3600") == {"max-age": "0"}


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({"Cache-Control": "s-maxage=10, max-age=99"}, 10),
        ({"Cache-Control": "max-age=99", "Expires": http_date(NOW + 500)}, 99),
        ({"Date": http_date(NOW), "Expires": http_date(NOW + 500)}, 500),
        ({"Date": http_date(NOW), "Expires": "0"}, 0),
        ({"Date": http_date(NOW), "Last-Modified": http_date(NOW - 1000)}, 100),
        ({"Cache-Control": "max-age=abc"}, 0),
        ({}, 0),
    ],
)
def test_freshness_lifetime_precedence(headers, lifetime):
    fields = {k.lower().encode(): v.encode() for k, v in headers.items()}
    cc = parse_cache_control(fields.get(b"cache-control"))
    assert freshness_lifetime(cc, fields, 200, response_time=NOW) == lifetime


def test_heuristic_freshness_only_for_heuristically_cacheable_statuses():
    last_modified = {"Date": http_date(NOW), "Last-Modified": http_date(NOW - 1000)}
    assert policy(last_modified, status=200).lifetime == 100
    assert not policy(last_modified, status=201).storable
    assert policy({**last_modified, "Cache-Control": "public"}, status=302).lifetime == 100


@pytest.mark.parametrize(
    ("headers", "auth", "storable", "reason"),
    [
        ({"Cache-Control": "max-age=60"}, False, True, ""),
        ({"Cache-Control": "no-store, max-age=60"}, False, False, "no-store"),
        ({"Cache-Control": "private, max-age=60"}, False, False, "private"),
        ({"Cache-Control": "max-age=60"}, True, False, "authorization"),
        ({"Cache-Control": "public, max-age=60"}, True, True, ""),
        ({"Cache-Control": "s-maxage=60"}, True, True, ""),
        ({"Cache-Control": "max-age=60, must-revalidate"}, True, True, ""),
        ({"Cache-Control": "max-age=60", "Vary": "Accept, *"}, False, False, "vary-star"),
        ({"Cache-Control": "max-age=60", "Set-Cookie": "s=1"}, False, False, "set-cookie"),
        (
            {"Cache-Control": 'max-age=60, private="Set-Cookie"', "Set-Cookie": "s=1"},
            False,
            True,
            "",
        ),
        ({"Cache-Control": "no-cache"}, False, True, ""),
        ({"Surrogate-Control": "max-age=60", "Cache-Control": "no-store"}, False, True, ""),
        (
            {"Surrogate-Control": "no-store", "Cache-Control": "max-age=60"},
            False,
            False,
            "surrogate-no-store",
        ),
    ],
)
def test_storable(headers, auth, storable, reason):
    result = policy(headers, auth=auth)
    assert (result.storable, result.reason) == (storable, reason)


def test_qualified_no_cache_and_private_name_fields_to_leave_out():
    result = policy({"Cache-Control": 'max-age=60, no-cache="Set-Cookie"', "Set-Cookie": "a=1"})
    assert result.storable and not result.no_cache and result.strip == ("set-cookie",)
    result = policy({"Cache-Control": 'max-age=60, private="X-User, Set-Cookie"'})
    assert result.storable and result.strip == ("x-user", "set-cookie")


def test_request_no_store_and_unknown_statuses_are_not_stored():
    assert policy({"Cache-Control": "max-age=60"}, request_cc={"no-store": None}).reason == (
        "no-store"
    )
    assert policy({"Cache-Control": "max-age=60"}, status=206).reason == "status"


def test_stale_permissions():
    assert policy({"Cache-Control": "max-age=1, stale-while-revalidate=30"}).swr == 30
    assert policy({"Cache-Control": "max-age=1, stale-if-error=30"}).sie == 30
    assert policy({"Cache-Control": "max-age=1, must-revalidate"}).stale_forbidden
    assert policy({"Cache-Control": "max-age=1, proxy-revalidate"}).stale_forbidden
    assert policy({"Cache-Control": "no-cache"}).stale_forbidden
    s_maxage = policy({"Cache-Control": "s-maxage=1"})
    assert s_maxage.s_maxage and not s_maxage.stale_forbidden


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (None, 2.0),
        (b"100", 101.0),
        # RFC 9111 5.1: an invalid Age is ignored; of a list, the first member counts.
        (b"abc", 2.0),
        (b"-5", 2.0),
        (b"1.5", 2.0),
        (b"10, 0", 11.0),
        (b"0, 7200", 2.0),
    ],
)
def test_corrected_initial_age(age, expected):
    """max(apparent age from Date, Age + response delay)."""
    fields = {b"date": http_date(NOW - 2).encode()}
    if age is not None:
        fields[b"age"] = age
    assert corrected_initial_age(fields, NOW - 1, NOW) == expected


def test_http_dates_and_etags():
    assert parse_http_date(http_date(NOW)) == NOW
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777.0
    assert parse_http_date("garbage") is None
    assert etag_matches(b'"a", W/"b"', b'"b"')
    assert etag_matches(b"*", b'"x"') and not etag_matches(b"*", None)
    assert not etag_matches(b'"a"', b'"b"')


def _entry(primary: bytes, body: bytes, tags: str = "", vary: tuple = (), secondary=()) -> Entry:
    headers = [(b"cache-control", b"max-age=60")]
    if tags:
        headers.append((b"surrogate-key", tags.encode()))
    return Entry(
        primary,
        200,
        headers,
        body,
        policy({"Cache-Control": "max-age=60"}),
        NOW,
        0.0,
        vary,
        secondary,
    )


def test_store_evicts_least_recently_used_by_bytes():
    store = Store(max_bytes=3000)
    entries = [_entry(b"/%d" % i, b"x" * 500) for i in range(5)]
    for e in entries[:3]:
        store.insert(e)
    assert store.lookup(b"/0", {}) is entries[0]  # now most recently used
    store.insert(entries[3])
    store.insert(entries[4])
    assert store.bytes <= 3000
    assert store.evictions >= 1
    assert store.lookup(b"/1", {}) is None
    assert store.lookup(b"/0", {}) is entries[0]
    assert not store.insert(_entry(b"/huge", b"x" * 5000))


def test_store_vary_and_tags():
    store = Store(max_bytes=10**6)
    vary = vary_fields(b"Accept-Language, accept-encoding")
    assert vary == (b"accept-encoding", b"accept-language")
    en = {b"accept-language": b"en"}
    store.insert(_entry(b"/v", b"en", "t1 t2", vary, secondary_key(vary, en)))
    store.insert(_entry(b"/v", b"fr", "t2", vary, secondary_key(vary, {b"accept-language": b"fr"})))
    assert store.lookup(b"/v", en).body == b"en"
    assert store.lookup(b"/v", {}) is None
    assert len(store.by_tag("t2")) == 2 and len(store.by_url(b"/v")) == 2
    for e in store.by_tag("t1"):
        store.remove(e)
    assert store.by_tag("t1") == [] and len(store.by_tag("t2")) == 1
    # A new Vary for the URL drops the variants keyed on the old fields.
    store.insert(_entry(b"/v", b"any", "t3"))
    assert len(store) == 1 and store.tags.keys() == {"t3"}
    assert store.clear() == 1 and store.bytes == 0


def test_generations_judge_fills_against_later_purges():
    gens = Generations()
    start = gens.current
    assert not gens.purged_since(start, b"/a", ("t",))
    gens.mark_tag("t")
    assert gens.purged_since(start, b"/a", ("t",))
    assert not gens.purged_since(start, b"/a", ("other",))
    assert not gens.purged_since(gens.current, b"/a", ("t",))
    gens.mark_key(b"/a")
    assert gens.purged_since(start, b"/a", ())
    gens.mark_all()
    assert gens.purged_since(start, b"/zzz", ())


def test_generation_marks_stay_bounded():
    gens = Generations(max_marks=3)
    start = gens.current
    for i in range(5):
        gens.mark_key(b"/%d" % i)
    assert len(gens.keys) <= 3
    assert gens.purged_since(start, b"/never-purged", ())  # conservative once collapsed


def test_sequencer_detects_gaps_and_new_epochs():
    seq = Sequencer()
    assert seq.observe(None, None) is None
    assert seq.observe("A", 1) is None  # the first publisher this node hears from
    assert seq.observe("A", 2) is None
    assert seq.observe("A", 2) is None  # a duplicate (HTTP and Redis both delivered it)
    assert "gap" in seq.observe("A", 4)
    assert "new epoch" in seq.observe("B", 1)
    assert "missed" in seq.observe("C", 3)


def test_purge_message_validation_and_url_keys():
    assert PurgeMessage.model_validate({"keys": ["a"]}).soft is False
    with pytest.raises(ValidationError):
        PurgeMessage.model_validate({"keys": "a"})
    with pytest.raises(ValidationError):
        PurgeMessage.model_validate({"key": ["a"]})
    with pytest.raises(ValidationError):
        PurgeMessage.model_validate({"seq": 0})
    assert url_key("/v1/x?a=1") == b"/v1/x?a=1"
    assert url_key("http://edge.example:8080/v1/x") == b"/v1/x"


def test_vary_normalises_unordered_token_lists():
    vary = (b"accept-language",)
    assert secondary_key(vary, {b"accept-language": b"en, DE"}) == secondary_key(
        vary, {b"accept-language": b"de,en"}
    )
    other = (b"x-custom",)
    assert secondary_key(other, {b"x-custom": b"A, b"}) != secondary_key(
        other, {b"x-custom": b"b, A"}
    )


def test_unknown_statuses_need_explicit_freshness():
    assert policy({"Cache-Control": "max-age=60"}, status=299).storable
    assert policy({"Cache-Control": "max-age=60, must-understand"}, status=299).reason == (
        "must-understand"
    )
    assert not policy({}, status=299).storable
    assert policy({"Cache-Control": "max-age=60"}, status=304).reason == "status"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (b"bytes=0-4", (0, 4)),
        (b"bytes=5-", (5, 9)),
        (b"bytes=-3", (7, 9)),
        (b"bytes=-30", (0, 9)),
        (b"bytes=8-100", (8, 9)),
        (b"bytes=10-", False),
        (b"bytes=-0", False),
        (b"bytes=0-1,3-4", None),
        (b"items=0-1", None),
        (b"bytes=4-2", None),
        (b"bytes=x-", None),
    ],
)
def test_byte_ranges(spec, expected):
    from madbwpu_r.edge.ranges import byte_range

    assert byte_range(spec, 10) == expected


def test_if_range():
    from madbwpu_r.edge.ranges import if_range_holds

    date = http_date(NOW).encode()
    assert if_range_holds(None, None, None)
    assert if_range_holds(b'"a"', b'"a"', None) and not if_range_holds(b'"a"', b'"b"', None)
    assert not if_range_holds(b'W/"a"', b'W/"a"', None)
    assert if_range_holds(date, None, date) and not if_range_holds(date, None, None)
