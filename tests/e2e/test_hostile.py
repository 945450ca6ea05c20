"""Issue 7's hostile inputs, sent to the real processes `madbwpu-r up` runs.

For every case: a 4xx problem (or a refusal on the raw connection), never a 500, the tiers still
answering, nothing changed (the heartbeats' state digests), and no traceback in any log.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_security import bearer, raw_exchange
from tests.e2e.test_stack import Running

PEOPLE = b"id,name\n1,ann\n2,bob\n3,cy\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("hostile") / "data")
    assert running.ingest("staging", "people", PEOPLE)["status"] == "succeeded"
    yield running
    running.stop()


def digests(stack: Running) -> dict[str, str]:
    return {
        env: stack.http.get(f"{urls['api']}/v1/heartbeat").json()["data"]["state_digest"]
        for env, urls in stack.endpoints.items()
    }


def assert_still_serving(stack: Running, before: dict[str, str]) -> None:
    for urls in stack.endpoints.values():
        assert stack.http.get(f"{urls['edge']}/healthz").status_code == 200
        assert stack.http.get(f"{urls['api']}/healthz").status_code == 200
    assert digests(stack) == before


BAD_ROWS = [
    "_sort=id&_after=W1sxLDJdLDVd",  # a cursor holding a list
    "id=9223372036854775808",  # past int64
    "id=-9223372036854775809",
    "&".join(f"id__ne={i}" for i in range(2000)),  # too many filters
    "id__=1",  # empty operator
    "id=1_0",  # Python's lenient int spelling
    "_sort=-",
    "_limit=1e3",
    "id=%ff",  # not UTF-8
    "_fields=nope",
]


@pytest.mark.parametrize("tier", ["edge", "api"])
@pytest.mark.parametrize("query", BAD_ROWS, ids=range(len(BAD_ROWS)))
def test_bad_rows_parameters_are_400_problems(stack, tier, query):
    before = digests(stack)
    url = f"{stack.endpoints['staging'][tier]}/v1/datasets/people/rows?{query}"
    answer = stack.http.get(url)
    # The API names the parameter (400); the edge may refuse an over-long target first (414).
    expected = {400} if tier == "api" else {400, 414}
    assert answer.status_code in expected, (query, answer.status_code, answer.text[:200])
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["status"] == answer.status_code
    assert_still_serving(stack, before)


def test_credentials_of_one_environment_are_refused_by_the_other(stack):
    before = digests(stack)
    staging = stack.tokens["staging"]
    production = stack.endpoints["production"]
    ingest = stack.http.post(
        f"{production['api']}/v1/datasets/secretprod/ingest",
        content=b"id\n1\n",
        headers={**bearer(staging["write_token"]), "Content-Type": "text/csv"},
    )
    assert ingest.status_code == 403
    purge = stack.http.post(
        f"{production['edge']}/_edge/purge",
        json={"keys": ["dataset:people"]},
        headers=bearer(staging["purge_token"]),
    )
    assert purge.status_code == 403
    assert_still_serving(stack, before)


def test_edge_internals_and_internal_addresses_are_not_given_away(stack):
    before = digests(stack)
    edge = stack.endpoints["staging"]["edge"]
    stats = stack.http.get(f"{edge}/_edge/stats")
    assert stats.status_code == 401
    assert "127.0.0.1" not in stats.text
    slash = stack.http.get(f"{edge}/v1/datasets/people/rows/")
    assert slash.status_code == 404 and "location" not in slash.headers
    assert_still_serving(stack, before)


def _host(edge: str) -> bytes:
    return edge.split("//", 1)[1].encode()


@pytest.mark.parametrize(
    ("name", "head", "status"),
    [
        ("no host", b"GET /healthz HTTP/1.1\r\n\r\n", b" 400 "),
        ("two hosts", b"GET /healthz HTTP/1.1\r\nHost: {h}\r\nHost: other\r\n\r\n", b" 400 "),
        ("bad host", b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", b" 400 "),
        (
            "5000 headers",
            b"GET /healthz HTTP/1.1\r\nHost: {h}\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(5000))
            + b"\r\n",
            b" 431 ",
        ),
        (
            "1 MB header",
            b"GET /healthz HTTP/1.1\r\nHost: {h}\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
            b" 431 ",
        ),
        (
            "declared 150 MiB body",
            b"POST /v1/datasets/x/ingest HTTP/1.1\r\nHost: {h}\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 157286400000\r\n\r\n",
            b" 413 ",
        ),
    ],
)
def test_malformed_http_at_the_edge_is_refused(stack, name, head, status):
    before = digests(stack)
    edge = stack.endpoints["staging"]["edge"]
    answer = raw_exchange(edge, head.replace(b"{h}", _host(edge)))
    assert answer.split(b"\r\n", 1)[0].find(status) > 0, (name, answer[:200])
    assert_still_serving(stack, before)


def test_a_rowid_column_loses_no_row_when_paging(stack):
    assert stack.ingest("staging", "shadow", b"rowid,v\n1,a\n1,b\n1,c\n")["status"] == "succeeded"
    api = stack.endpoints["staging"]["api"]
    url, seen = f"{api}/v1/datasets/shadow/rows?_limit=1", []
    while url:
        page = stack.http.get(url).json()
        seen += [row["v"] if isinstance(row, dict) else row[1] for row in page["rows"]]
        url = page["next"] and api + page["next"]
    assert seen == ["a", "b", "c"]


@pytest.mark.parametrize(
    "body",
    [b"id,Name,name\n1,a,b\n", b"id,v\n1,a\x00b\n", b"id,v\n1\n", b"id,v\n1,\xff\n"],
    ids=["case-only duplicate", "NUL byte", "ragged row", "bad UTF-8"],
)
def test_a_bad_file_fails_at_once_and_changes_nothing(stack, body):
    before = digests(stack)
    job = stack.ingest("staging", "people", body)
    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert "line" in job["error"]
    assert_still_serving(stack, before)


def test_no_traceback_in_any_log(stack):
    # Runs last in this module: every case above has been through the stack by now.
    assert digests(stack)
    assert "Traceback" not in stack.log.read_text(errors="replace")
