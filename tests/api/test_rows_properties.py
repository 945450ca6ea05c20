"""Property: whatever the query string, /rows answers 200 or a 4xx problem, never a 500.

Through Starlette's TestClient on the real app over a real version file; the raw-bytes cases
(which an HTTP client would percent-encode first) go to the parser and to the ASGI app directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import string
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from madbwpu_r.api.rowquery import READ_PARAMS, parse_query
from madbwpu_r.problems import ProblemError
from madbwpu_r.store.versions import FILTER_OPS
from tests.api.conftest import ApiHarness

COLUMNS = ["id", "score", "name", "rowid", "a__b", "_x"]
DATA = (
    b"id,score,name,rowid,a__b,_x\n"
    b"1,1.5,ann,7,x,p\n2,,bob,7,y,q\n3,-2e3,,8,,r\n9223372036854775807,0.0,dee,9,z,\n"
)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    api = ApiHarness(tmp_path_factory.mktemp("rows-properties"))
    with api.client:
        job = api.ingest_and_run("people", DATA)
        assert job["status"] == "succeeded", job
        yield api


def cursors() -> st.SearchStrategy[str]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )
    as_json = json_values.map(
        lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode().rstrip("=")
    )
    return as_json | st.text(string.ascii_letters + string.digits + "-_=", max_size=40)


def numbers() -> st.SearchStrategy[str]:
    return (
        st.integers(-(2**70), 2**70).map(str)
        | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30]).map(str)
        | st.floats().map(repr)
        | st.sampled_from(["nan", "inf", "-inf", "1_0", " 1", "1 ", "+1", "1e999", "-", "", "0x10"])
    )


keys = (
    st.sampled_from(COLUMNS)
    | st.builds(
        lambda c, op: f"{c}__{op}",
        st.sampled_from(COLUMNS),
        st.sampled_from([*FILTER_OPS, "", "like", "__eq", "EQ"]),
    )
    | st.sampled_from(READ_PARAMS)
    | st.text(max_size=12)
)
values = (
    numbers()
    | cursors()
    | st.builds(lambda d, c: d + c, st.sampled_from(["", "-", "--"]), st.sampled_from(COLUMNS))
    | st.lists(st.sampled_from([*COLUMNS, "", "nope"]), max_size=4).map(",".join)
    | st.text(max_size=20)
)
pairs = st.lists(st.tuples(keys, values), max_size=8)
# Printable ASCII: an HTTP client refuses control characters in a URL before sending it.
raw_ascii = st.text(string.printable[:-5].replace("#", ""), max_size=60)


def check(client: httpx.Client, response: httpx.Response) -> None:
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["status"] == response.status_code and body["detail"]
    else:
        body = response.json()
        assert set(body) == {"dataset", "version", "columns", "rows", "next"}
        if body["next"]:
            check(client, client.get(body["next"]))


def rows_url(query: str) -> httpx.URL:
    return httpx.URL("http://testserver/v1/datasets/people/rows", query=query.encode("ascii"))


@SETTINGS
@given(pairs)
def test_any_parameters_give_200_or_a_problem(harness, items):
    check(harness.client, harness.client.get(rows_url(urlencode(items))))


@SETTINGS
@given(st.tuples(keys, values))
def test_any_one_parameter_gives_200_or_a_problem(harness, item):
    """One at a time, so that no other mistake is refused first and hides this one."""
    check(harness.client, harness.client.get(rows_url(urlencode([item]))))


@SETTINGS
@given(raw_ascii)
def test_any_ascii_query_string_gives_200_or_a_problem(harness, query):
    check(
        harness.client,
        harness.client.get(rows_url(quote(query, safe=string.printable.replace(" ", "")))),
    )


@SETTINGS
@given(st.binary(max_size=40), st.sampled_from(["name", "id", "_sort", "_after", "x"]))
def test_any_percent_encoded_bytes_give_200_or_a_problem(harness, data, key):
    encoded = "".join(f"%{b:02X}" for b in data)
    check(harness.client, harness.client.get(rows_url(f"{key}={encoded}")))
    check(harness.client, harness.client.get(rows_url(f"{encoded}=1")))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_the_parser_takes_any_bytes(raw):
    try:
        parsed = parse_query(raw)
    except ProblemError as exc:
        assert exc.status == 400 and exc.detail
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items)


def asgi_get(app, query: bytes) -> tuple[int, bytes]:
    """One request straight into the ASGI app, with query bytes no HTTP client would send."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/datasets/people/rows",
        "raw_path": b"/v1/datasets/people/rows",
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.parametrize("query", [b"name=\xff", b"\xc3=1", b"name=\xed\xa0\x80", b"id=\x00"])
def test_raw_bytes_that_are_not_utf8_are_a_400(harness, query):
    status, body = asgi_get(harness.app, query)
    assert status == 400, body
    assert b"UTF-8" in body or b"not a valid integer" in body
