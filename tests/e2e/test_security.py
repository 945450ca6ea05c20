"""Credentials, links, limits and housekeeping, against the real processes `madbwpu-r up` runs."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from madbwpu_r.blobs import open_blobs
from madbwpu_r.config import EnvPaths
from tests.e2e.test_stack import Running


def uploads(stack: Running) -> list[str]:
    """Uploads in staging's blob store, and any partial write its file backend left behind."""
    with open_blobs(EnvPaths(stack.data_dir.resolve(), "staging").default_blob_url) as blobs:
        keys = [b.key for b in blobs.list("uploads/")]
    tmp = stack.data_dir / "staging" / "blobs" / ".tmp"
    return keys + [str(p) for p in (tmp.iterdir() if tmp.exists() else [])]


UPLOAD_LIMIT = 64 * 1024
OTHER = {"staging": "production", "production": "staging"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Running]:
    running = Running(
        tmp_path_factory.mktemp("security") / "data", "--max-upload-bytes", str(UPLOAD_LIMIT)
    )
    yield running
    running.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_exchange(url: str, head: bytes, body_parts: list[bytes] = (), wait: float = 10) -> bytes:
    """Send a request head (and some body) on a raw socket; return what the server answers
    before we send anything more: a refusal that comes before the body was read."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=wait) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


# ---- item 2: every environment has its own credentials -----------------------------------------


def test_each_environment_has_its_own_tokens_in_a_private_file(stack):
    files = {env: stack.data_dir / env / "secrets.json" for env in ("staging", "production")}
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (stack.data_dir / "secrets.json").exists()  # no file shared by both
    for kind in ("write_token", "worker_token", "purge_token"):
        assert stack.tokens["staging"][kind] != stack.tokens["production"][kind]


@pytest.mark.parametrize("env", ["staging", "production"])
def test_a_write_token_is_refused_by_the_other_environment(stack, env):
    target = stack.endpoints[OTHER[env]]["api"]
    refused = stack.http.post(
        f"{target}/v1/datasets/crossenv/ingest",
        content=b"id\n1\n",
        headers={**bearer(stack.tokens[env]["write_token"]), "Content-Type": "text/csv"},
    )
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert stack.http.get(f"{target}/v1/datasets/crossenv").status_code == 404  # nothing landed
    if OTHER[env] == "staging":
        own = stack.ingest("staging", "crossenv-own", b"id\n1\n")  # its own token works
        assert own["status"] == "succeeded", own
    else:  # production's own write token is refused too: its data moves only by a cutover
        own = stack.http.post(
            f"{target}/v1/datasets/crossenv/ingest",
            content=b"id\n1\n",
            headers={
                **bearer(stack.tokens["production"]["write_token"]),
                "Content-Type": "text/csv",
            },
        )
        assert own.status_code == 409 and own.json()["refusal"] == "production-ingest", own.text


@pytest.mark.parametrize("env", ["staging", "production"])
def test_a_worker_token_is_refused_by_the_other_environment(stack, env):
    other = OTHER[env]
    # Production runs no ingest jobs (its data comes from releases): a made-up job id there.
    job = stack.ingest("staging", f"events-{env}", b"id\n1\n") if other == "staging" else None
    job_id = job["id"] if job else "0" * 32
    target = stack.endpoints[other]["api"]
    event = {"kind": "progress", "attempt": 1, "fraction": 0.5, "message": "forged"}
    url = f"{target}/v1/internal/jobs/{job_id}/events"
    refused = stack.http.post(url, json=event, headers=bearer(stack.tokens[env]["worker_token"]))
    assert refused.status_code == 403, refused.text
    assert stack.http.post(url, json=event).status_code == 401
    if job is None:
        return
    assert stack.http.get(f"{target}/v1/jobs/{job_id}").json()["progress"]["message"] != ("forged")
    own = stack.http.post(
        url,
        json={"kind": "lookup", "attempt": 1},
        headers=bearer(stack.tokens[other]["worker_token"]),
    )
    assert own.status_code == 200 and own.json()["version"]["digest"] == job["version"]


@pytest.mark.parametrize("env", ["staging", "production"])
def test_a_purge_token_is_refused_by_the_other_environments_edge(stack, env):
    other = OTHER[env]
    edge = stack.endpoints[other]["edge"]
    url = f"{edge}/v1/datasets"  # every environment lists its datasets (key `datasets`)
    first = stack.http.get(url)
    assert first.status_code == 200, (first.status_code, first.headers, first.text)
    assert stack.http.get(url).headers["x-cache"] == "HIT"
    purge = {"keys": ["datasets"]}
    foreign = bearer(stack.tokens[env]["purge_token"])
    refused = stack.http.post(f"{edge}/_edge/purge", json=purge, headers=foreign)
    assert refused.status_code == 403, refused.text
    missing = stack.http.post(f"{edge}/_edge/purge", json=purge)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert stack.http.get(url).headers["x-cache"] == "HIT"
    own = bearer(stack.tokens[other]["purge_token"])
    assert stack.http.post(f"{edge}/_edge/purge", json=purge, headers=own).status_code == 200
    assert stack.http.get(url).headers["x-cache"] == "MISS"


def cli_ingest(stack, csv, env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "madbwpu_r", "ingest", "cli-ds", str(csv)]
        + ["--env", env, "--data-dir", str(stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_ingest_uses_the_token_of_the_env_given(stack, tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("id\n7\n")
    done = cli_ingest(stack, csv, "staging")
    assert done.returncode == 0, done.stderr
    api = stack.endpoints["staging"]["api"]
    assert stack.http.get(f"{api}/v1/datasets/cli-ds/rows").json()["rows"] == [{"id": 7}]
    # Into production, with production's own token: refused, naming the pipeline, no traceback.
    refused = cli_ingest(stack, csv, "production")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "madbwpu-r deploy" in refused.stderr + refused.stdout, refused.stderr
    prod = stack.endpoints["production"]["api"]
    assert stack.http.get(f"{prod}/v1/datasets/cli-ds").status_code == 404


# ---- item 7: no internal address in what the API gives out -------------------------------------


def test_links_the_api_gives_out_are_relative(stack):
    api = stack.endpoints["staging"]["api"]
    edge = stack.endpoints["staging"]["edge"]
    accepted = stack.http.post(
        f"{edge}/v1/datasets/linked/ingest",
        content=b"id\n1\n2\n3\n",
        headers={**stack.write, "Content-Type": "text/csv"},
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status_url"].startswith("/v1/jobs/")
    assert accepted.headers["location"] == accepted.json()["status_url"]
    deadline = time.monotonic() + 60
    while stack.http.get(edge + accepted.json()["status_url"]).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    page = stack.http.get(f"{edge}/v1/datasets/linked/rows?_limit=1").json()
    assert page["next"].startswith("/v1/datasets/linked/rows?")
    api_port = str(urlsplit(api).port)
    for base in (api, edge):
        for path in ("/v1/datasets/linked/rows/", "/v1/datasets/", "/v1/jobs/x/"):
            answer = stack.http.get(base + path, follow_redirects=False)
            assert answer.status_code == 404, (base, path, answer.status_code)
            assert "location" not in answer.headers
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert api_port not in answer.text


# ---- item 9: housekeeping ----------------------------------------------------------------------


def test_data_directory_and_files_are_private(stack):
    stack.ingest("staging", "private", b"id\n1\n")
    assert stat.S_IMODE(stack.data_dir.stat().st_mode) == 0o700
    paths = list(stack.data_dir.rglob("*"))
    assert any(p.name.endswith(".sqlite") for p in paths)
    exposed = [str(p) for p in paths if p.stat().st_mode & 0o077]
    assert not exposed


def test_the_upload_of_a_failed_job_is_deleted(stack):
    failed = stack.ingest("staging", "broken", b"id,name\n1\n")
    assert failed["status"] == "failed"
    assert uploads(stack) == []


def test_an_aborted_upload_is_one_log_line(stack):
    api = stack.endpoints["staging"]["api"]
    parts = urlsplit(api)
    head = (
        "POST /v1/datasets/aborted/ingest HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\nContent-Type: text/csv\r\nContent-Length: 50000\r\n"
        f"Authorization: Bearer {stack.tokens['staging']['write_token']}\r\n\r\n"
    ).encode()
    before = stack.log.read_text()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head + b"id\n1\n2\n")
    deadline = time.monotonic() + 30
    while "client disconnected" not in (new := stack.log.read_text()[len(before) :]):
        assert time.monotonic() < deadline, new
        time.sleep(0.1)
    assert new.count("client disconnected") == 1
    assert "Traceback" not in new and "ClientDisconnect" not in new
    assert uploads(stack) == []  # no .part left


# ---- item 1 (API side): the upload limit is enforced before the body is read ------------------


def test_a_declared_oversize_upload_is_refused_before_its_body(stack):
    api = stack.endpoints["staging"]["api"]
    head = (
        "POST /v1/datasets/huge/ingest HTTP/1.1\r\n"
        f"Host: {urlsplit(api).netloc}\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {10**12}\r\n"
        f"Authorization: Bearer {stack.tokens['staging']['write_token']}\r\n\r\n"
    ).encode()
    answer = raw_exchange(api, head)  # not one byte of the body is sent
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"application/problem+json" in answer


def test_a_chunked_upload_is_refused_once_it_passes_the_limit(stack):
    api = stack.endpoints["staging"]["api"]
    head = (
        "POST /v1/datasets/huge/ingest HTTP/1.1\r\n"
        f"Host: {urlsplit(api).netloc}\r\nContent-Type: text/csv\r\n"
        "Transfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {stack.tokens['staging']['write_token']}\r\n\r\n"
    ).encode()
    chunk = b"x" * 8192
    body = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (UPLOAD_LIMIT // len(chunk) + 1)
    answer = raw_exchange(api, head, body)  # the body never ends: the answer comes before
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert uploads(stack) == []
    assert stack.http.get(f"{api}/v1/datasets/huge").status_code == 404
