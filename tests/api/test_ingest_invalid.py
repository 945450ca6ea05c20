"""Column names never shadow the row order, and an invalid file fails its job at once."""

from __future__ import annotations

import pytest

from madbwpu_r.worker.csvfile import MAX_COLUMNS


def follow(api, url: str) -> list[dict]:
    seen: list[dict] = []
    while url:
        page = api.client.get(url)
        assert page.status_code == 200, page.text
        seen += page.json()["rows"]
        url = page.json()["next"]
    return seen


@pytest.mark.parametrize("column", ["rowid", "oid", "_rowid_", "ROWID", "_row", "c0", "c1"])
def test_a_column_named_like_an_internal_one_loses_no_row(api, column):
    body = f"{column},v\n1,a\n1,b\n1,c\n".encode()
    job = api.ingest_and_run("t", body)
    assert job["status"] == "succeeded", job
    expected = [{column: 1, "v": v} for v in "abc"]
    assert api.client.get("/v1/datasets/t/rows").json()["rows"] == expected
    assert follow(api, "/v1/datasets/t/rows?_limit=1") == expected
    assert follow(api, "/v1/datasets/t/rows?_limit=1&_sort=-v") == expected[::-1]
    assert follow(api, f"/v1/datasets/t/rows?_limit=1&_sort={column}") == expected
    filtered = api.client.get(f"/v1/datasets/t/rows?{column}=1&v__ne=b").json()["rows"]
    assert filtered == [expected[0], expected[2]]


def test_every_internal_looking_name_at_once(api):
    body = b'rowid,oid,_rowid_,_row,"c""0",c0,"a b"\n1,2,3,4,5,6,7\n8,9,10,11,12,13,14\n'
    job = api.ingest_and_run("t", body)
    assert job["status"] == "succeeded", job
    page = api.client.get("/v1/datasets/t/rows?_limit=1&_fields=c0,rowid").json()
    assert page["rows"] == [{"c0": 6, "rowid": 1}]
    assert api.client.get(page["next"]).json()["rows"] == [{"c0": 13, "rowid": 8}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"id,Name,name\n1,a,b\n", "line 1: column names that differ only in case"),
        (",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)).encode() + b"\n", "line 1"),
        (b"id,v\n1,a\n2,b\x00c\n", "line 3: NUL"),
    ],
)
def test_an_invalid_file_fails_at_once_without_a_retry(api, body, message):
    job = api.ingest_and_run("t", body)
    assert job["status"] == "failed", job
    assert message in job["error"], job
    assert job["attempts"] == 1, job
    info = api.state.queue.get(job["id"])
    assert info.state == "dead" and info.attempts == 1
    assert list(api.state.paths.versions_dir.glob("*.part")) == []
    assert list(api.state.paths.versions_dir.glob(".*.part")) == []
    assert api.client.get("/v1/datasets/t").status_code == 404


def test_the_column_limit_itself_is_accepted(api):
    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS)).encode()
    row = ",".join(str(i) for i in range(MAX_COLUMNS)).encode()
    job = api.ingest_and_run("wide", header + b"\n" + row + b"\n")
    assert job["status"] == "succeeded", job
    page = api.client.get(f"/v1/datasets/wide/rows?c{MAX_COLUMNS - 1}={MAX_COLUMNS - 1}").json()
    assert len(page["rows"]) == 1 and len(page["columns"]) == MAX_COLUMNS
