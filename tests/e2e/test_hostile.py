"""Issue 7's hostile inputs, sent to the real processes `madbwpu-r up` runs.

For every case: a 4xx problem (or a refusal on the raw connection), never a 500, the tiers still
answering, nothing changed (the heartbeats' state digests), and no traceback in any log.
"""

from __future__ import annotations

import re
import select
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import orjson
import pytest

from madbwpu_r.identity.http import MAX_SIGNED_BODY
from tests.e2e.test_security import bearer, raw_exchange
from tests.e2e.test_stack import Running
from tests.edge.test_edge_slowloris import until_closed as _until_closed

PEOPLE = b"id,name\n1,ann\n2,bob\n3,cy\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Running]:
    # A short body timeout, so that a stalled body's cut-off is seen within the test.
    running = Running(tmp_path_factory.mktemp("hostile") / "data", "--body-timeout", "2")
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


GUARD = 30.0  # seconds a test waits for a close that never comes: a guard, not an assertion


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=GUARD)


def _responses(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(status, head, body) of each Content-Length framed response in `data`."""
    found = []
    while data.startswith(b"HTTP/1."):
        head, _, rest = data.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        found.append((int(head.split(b" ", 2)[1]), head, rest[:length]))
        data = rest[length:]
    assert not data, data[:200]  # nothing but whole responses
    return found


def assert_refused(data: bytes) -> None:
    """At most one answer, a 4xx problem, then a closed connection; a request smuggled behind
    the first would show up as a second response."""
    answers = _responses(data)
    assert len(answers) <= 1, [a[:2] for a in answers]
    for status, head, body in answers:
        assert 400 <= status < 500, (status, body[:200])
        assert b"application/problem+json" in head.lower(), head
        assert orjson.loads(body)["status"] == status


def _post(tier_url: str, token: str, path: str, framing: bytes, body: bytes) -> bytes:
    host = urlsplit(tier_url).netloc.encode()
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Authorization: Bearer "
        + token.encode()
        + b"\r\nContent-Type: text/csv\r\n"
        + framing
        + b"\r\n"
        + body
    )


SMUGGLED = b"GET /v1/datasets/people HTTP/1.1\r\nHost: x\r\n\r\n"
FRAMINGS = {
    "CL and TE": (b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "TE and CL": (b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"0\r\n\r\n"),
    "CL and TE list": (
        b"Content-Length: 6\r\nTransfer-Encoding: gzip, chunked\r\n",
        b"0\r\n\r\n",
    ),
    "TE not chunked": (b"Transfer-Encoding: xchunked\r\n", b"5\r\nid\n1\n\r\n0\r\n\r\n"),
    "TE with space before colon": (b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    "two CL, different": (b"Content-Length: 5\r\nContent-Length: 6\r\n", b"id\n1\n\n"),
    "CL list": (b"Content-Length: 5, 6\r\n", b"id\n1\n\n"),
    "CL signed": (b"Content-Length: +5\r\n", b"id\n1\n"),
    "chunk size not hex": (b"Transfer-Encoding: chunked\r\n", b"zz\r\nid\n1\n\r\n0\r\n\r\n"),
    "chunk size negative": (b"Transfer-Encoding: chunked\r\n", b"-5\r\nid\n1\n\r\n0\r\n\r\n"),
    "chunk size 0x": (b"Transfer-Encoding: chunked\r\n", b"0x5\r\nid\n1\n\r\n0\r\n\r\n"),
    "chunk size overflow": (
        b"Transfer-Encoding: chunked\r\n",
        b"1" + b"0" * 20 + b"\r\nid\n1\n\r\n0\r\n\r\n",
    ),
    "chunk longer than its size": (
        b"Transfer-Encoding: chunked\r\n",
        b"2\r\nid\n1\n\r\n0\r\n\r\n",
    ),
}


@pytest.mark.parametrize("tier", ["edge", "api"])
@pytest.mark.parametrize("framing", FRAMINGS, ids=list(FRAMINGS))
def test_ambiguous_or_malformed_body_framing_is_refused(stack, tier, framing):
    """Request smuggling (RFC 9112 6.3, 11.2) and bad chunk sizes: a 4xx problem or a closed
    connection, never a second request read from the first's body, and nothing ingested."""
    before = digests(stack)
    url = stack.endpoints["staging"][tier]
    name = f"smuggled-{tier}-{list(FRAMINGS).index(framing)}"
    fields, body = FRAMINGS[framing]
    token = stack.tokens["staging"]["write_token"]
    with _connect(url) as sock:
        sock.sendall(_post(url, token, f"/v1/datasets/{name}/ingest", fields, body) + SMUGGLED)
        assert_refused(_until_closed(sock))
    assert stack.http.get(f"{url}/v1/datasets/{name}").status_code == 404
    assert_still_serving(stack, before)


def _stream_until_answered(url: str, head: bytes, piece: bytes, total: int) -> tuple[bytes, int]:
    """Send `head`, then `piece` after `piece` up to `total` bytes, stopping as soon as the
    server answers; returns the answer and how many body bytes had been sent by then."""
    sent = 0
    with _connect(url) as sock:
        sock.sendall(head)
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head_part, _, body = answer.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head_part)
        while match and len(body) < int(match.group(1)):
            body += sock.recv(65536)
    return head_part + b"\r\n\r\n" + body, sent


FAKE_ACT = (
    b"X-Madbwpu-Identity: nobody\r\nX-Madbwpu-Time: 1\r\n"
    b"X-Madbwpu-Nonce: 00000000000000000000000000000000\r\nX-Madbwpu-Signature: AAAA\r\n"
)
HUGE = 256 * 2**20  # what the client would send: 256 times the signed-request body limit


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_unauthenticated_signed_request_cannot_make_the_api_buffer_its_body(stack, framing):
    """The signed act's body is read before the signature is checked; past MAX_SIGNED_BODY the
    API answers 413 while the client is still sending (it stops reading, nothing is kept)."""
    before = digests(stack)
    api = stack.endpoints["staging"]["api"]
    piece = b"x" * 65536
    if framing == "chunked":
        fields, piece = b"Transfer-Encoding: chunked\r\n", b"10000\r\n" + piece + b"\r\n"
    else:
        fields = b"Content-Length: %d\r\n" % HUGE
    head = (
        b"GET /v1/audit HTTP/1.1\r\nHost: " + urlsplit(api).netloc.encode() + b"\r\n"
        + FAKE_ACT + fields + b"\r\n"
    )  # fmt: skip
    answer, sent = _stream_until_answered(api, head, piece, HUGE)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert sent < HUGE  # answered before the body was all sent: it was not all read first
    problem = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert problem["status"] == 413 and str(MAX_SIGNED_BODY) in problem["detail"]
    assert_still_serving(stack, before)


SPOOFED = {
    "X-Forwarded-For": "203.0.113.66",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "6666",
    "X-Forwarded-Prefix": "/evil",
    "Forwarded": 'for=203.0.113.66;host="evil.example";proto=https',
    "X-Real-IP": "203.0.113.66",
}


@pytest.mark.parametrize("tier", ["edge", "api"])
def test_spoofed_forwarding_fields_are_not_trusted(stack, tier):
    """What a client says about the path its request took neither reaches a response (links,
    problems) nor a cached entry that other clients get."""
    before = digests(stack)
    url = stack.endpoints["staging"][tier]
    paths = [
        "/v1/datasets/people/rows?_limit=1&_sort=id",
        "/v1/datasets/people",
        "/v1/datasets/nothere",
        "/v1/datasets/people/rows/",
    ]
    for path in paths:
        spoofed = stack.http.get(url + path, headers=SPOOFED)
        after = stack.http.get(url + path)  # the cached entry (edge) or a fresh answer
        for answer in (spoofed, after):
            assert answer.status_code < 500, (path, answer.status_code)
            text = answer.text + str(answer.headers)
            for value in ("evil", "203.0.113.66", "https:", "6666"):
                assert value not in text, (path, value, text[:300])
    rows = stack.http.get(f"{url}/v1/datasets/people/rows?_limit=1", headers=SPOOFED).json()
    assert rows["next"].startswith("/v1/datasets/people/rows?")
    assert_still_serving(stack, before)


def _secrets(stack: Running) -> list[str]:
    """Every token of every environment, and the key material of the data dir's keys."""
    found = [token for tokens in stack.tokens.values() for token in tokens.values()]
    for path in (stack.data_dir / "keys").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            found += [word for word in re.findall(r"[A-Za-z0-9+/=_-]{16,}", text)]
    assert len(found) >= 6
    return found


def test_metrics_of_every_tier_leak_no_secret_and_no_dataset(stack):
    """/metrics is public (README, Security): it must hold only counters, gauges and names."""
    stack.http.get(f"{stack.endpoints['staging']['edge']}/v1/datasets/people/rows")
    secrets = _secrets(stack)
    for env, urls in stack.endpoints.items():
        for tier in ("edge", "api"):
            text = stack.http.get(f"{urls[tier]}/metrics").text
            assert "madbwpu" in text  # it is the metrics page
            for secret in secrets:
                assert secret not in text, (env, tier)
            assert "people" not in text and "shadow" not in text  # no dataset names
            assert "127.0.0.1" not in text and "sqlite" not in text  # no address, no engine URL


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


@pytest.mark.parametrize("tier", ["edge", "api"])
def test_an_upload_that_stops_arriving_is_cut_off_and_changes_nothing(stack, tier):
    """A client that sends a head and a little of its body, then nothing, is answered 408 and
    its connection closed; the partial upload becomes no ingest and no version."""
    before = digests(stack)
    parts = urlsplit(stack.endpoints["staging"][tier])
    head = (
        f"POST /v1/datasets/people/ingest HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {stack.tokens['staging']['write_token']}\r\n"
        "Content-Type: text/csv\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head + b"id,name\n4,dee\n")  # then nothing more
        answer = _until_closed(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408 "), answer[:300]
    problem = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert problem["status"] == 408 and "stopped arriving" in problem["detail"]
    assert_still_serving(stack, before)
