"""The API tier in process: ingest through the queue into versions, then cacheable reads."""

from __future__ import annotations

from tests.api.conftest import TOKENS

PEOPLE = b"id,name,age\n1,ann,31\n2,bob,\n3,cid,27\n4,dee,45\n"


def assert_problem(response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    assert fragment in body.get("detail", ""), body
    return body


def test_ingest_creates_a_version_with_digest_and_rows(api):
    job = api.ingest_and_run("people", PEOPLE)
    assert job["status"] == "succeeded", job
    assert job["dataset"] == "people" and len(job["version"]) == 64
    assert job["progress"]["fraction"] == 1.0
    info = api.client.get("/v1/datasets/people").json()["current"]
    assert info["digest"] == job["version"]
    assert info["row_count"] == 4
    assert info["schema"] == [
        {"name": "id", "type": "integer"},
        {"name": "name", "type": "text"},
        {"name": "age", "type": "integer"},
    ]
    rows = api.client.get("/v1/datasets/people/rows")
    assert rows.status_code == 200
    assert rows.json()["rows"][1] == {"id": 2, "name": "bob", "age": None}
    assert rows.headers["surrogate-key"] == f"dataset:people version:{info['digest']}"
    assert "s-maxage" in rows.headers["cache-control"]
    assert rows.headers["etag"].startswith('"')


def test_same_content_gives_the_same_digest(api):
    first = api.ingest_and_run("a", PEOPLE)
    second = api.ingest_and_run("b", PEOPLE)
    assert first["version"] == second["version"]
    third = api.ingest_and_run("a", PEOPLE + b"5,eve,50\n")
    assert third["version"] != first["version"]
    assert [v["digest"] for v in api.client.get("/v1/datasets/a/versions").json()["versions"]] == [
        first["version"],
        third["version"],
    ]


def test_conditional_read_answers_304(api):
    api.ingest_and_run("people", PEOPLE)
    first = api.client.get("/v1/datasets/people/rows?_limit=2")
    again = api.client.get(
        "/v1/datasets/people/rows?_limit=2", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    other = api.client.get(
        "/v1/datasets/people/rows?_limit=3", headers={"If-None-Match": first.headers["etag"]}
    )
    assert other.status_code == 200


def test_keyset_pagination_sort_filter_and_fields(api):
    api.ingest_and_run("people", PEOPLE)
    page = api.client.get("/v1/datasets/people/rows?_limit=2&_sort=-age&_fields=name,age").json()
    assert page["columns"] == ["name", "age"]
    assert page["rows"] == [{"name": "dee", "age": 45}, {"name": "ann", "age": 31}]
    rest = api.client.get(page["next"]).json()
    assert rest["rows"] == [{"name": "cid", "age": 27}, {"name": "bob", "age": None}]
    assert rest["next"] is None
    filtered = api.client.get("/v1/datasets/people/rows?age__gte=30").json()
    assert [r["name"] for r in filtered["rows"]] == ["ann", "dee"]
    assert api.client.get("/v1/datasets/people/rows?name=bob").json()["rows"][0]["id"] == 2


def test_pinned_version_is_immutable(api):
    first = api.ingest_and_run("people", PEOPLE)
    api.ingest_and_run("people", b"id\n9\n")
    old = api.client.get(f"/v1/datasets/people/rows?_version={first['version']}")
    assert old.json()["rows"][0]["name"] == "ann"
    assert "immutable" in old.headers["cache-control"]
    assert api.client.get("/v1/datasets/people/rows").json()["rows"] == [{"id": 9}]


def test_malformed_csv_fails_its_job_and_keeps_the_previous_version(api):
    good = api.ingest_and_run("people", PEOPLE)
    for body, line in [
        (b"id,name\n1,a\n2\n", "line 3"),
        (b"", "line 1"),
        (b"id\n\xff\n", "line 2"),
    ]:
        job = api.ingest_and_run("people", body)
        assert job["status"] == "failed"
        assert line in job["error"], job
        assert job["version"] is None
    assert api.client.get("/v1/datasets/people").json()["current"]["digest"] == good["version"]
    assert len(api.client.get("/v1/datasets/people/versions").json()["versions"]) == 1


def test_writes_need_the_write_token(api):
    assert_problem(api.ingest("people", PEOPLE, token=None), 401, "write token")
    assert_problem(api.ingest("people", PEOPLE, token="nope"), 403)
    assert_problem(api.ingest("people", PEOPLE, token=TOKENS["worker_token"]), 403)
    assert api.state.queue.depth("ingest").ready == 0
    assert api.uploads() == []


def test_bad_requests_are_problems_and_change_nothing(api):
    assert_problem(api.ingest("bad name!", PEOPLE), 400, "not a valid dataset name")
    assert_problem(
        api.ingest("people", PEOPLE, **{"Content-Type": "application/json"}), 415, "text/csv"
    )
    assert_problem(api.client.get("/v1/datasets/nope/rows"), 404, "no dataset named 'nope'")
    assert_problem(api.client.get("/v1/jobs/nope"), 404)
    api.ingest_and_run("people", PEOPLE)
    assert_problem(api.client.get("/v1/datasets/people/rows?_limit=abc"), 400, "_limit")
    assert_problem(api.client.get("/v1/datasets/people/rows?_limit=0"), 400, "between")
    assert_problem(
        api.client.get("/v1/datasets/people/rows?height=3"), 400, "unknown column 'height'"
    )
    assert_problem(api.client.get("/v1/datasets/people/rows?age=old"), 400, "not a valid integer")
    assert_problem(
        api.client.get("/v1/datasets/people/rows?age__like=3"), 400, "unknown filter operator"
    )
    assert_problem(api.client.get("/v1/datasets/people/rows?_after=%%%"), 400, "cursor")
    assert_problem(
        api.client.get("/v1/datasets/people/rows?_frobnicate=1"), 400, "unknown parameter"
    )
    assert_problem(api.client.get("/v1/datasets/people/rows?_version=abc"), 404, "no version")
    assert_problem(api.client.delete("/v1/datasets/people/rows"), 405)
    assert api.state.queue.depth("ingest").ready == 0


def test_idempotency_key_deduplicates_producer_retries(api):
    first = api.ingest("people", PEOPLE, **{"Idempotency-Key": "k1"})
    second = api.ingest("people", PEOPLE, **{"Idempotency-Key": "k1"})
    assert first.json()["job_id"] == second.json()["job_id"]
    assert second.json()["duplicate"] is True
    assert api.state.queue.depth("ingest").ready == 1
    assert len(api.uploads()) == 1


def test_version_events_apply_once_and_need_the_worker_token(api):
    job = api.ingest_and_run("people", PEOPLE)
    version = api.client.get("/v1/datasets/people").json()["current"]
    url = f"/v1/internal/jobs/{job['id']}/events"
    event = {"attempt": 2, "kind": "version", "version": version}
    assert_problem(api.client.post(url, json=event), 401)
    assert_problem(
        api.client.post(
            url, json=event, headers={"Authorization": f"Bearer {TOKENS['write_token']}"}
        ),
        403,
    )
    again = api.client.post(
        url, json=event, headers={"Authorization": f"Bearer {TOKENS['worker_token']}"}
    )
    assert again.status_code == 200 and again.json()["applied"] is False
    assert len(api.client.get("/v1/datasets/people/versions").json()["versions"]) == 1


def test_heartbeat_reports_environment_data_store_and_queue(api):
    beat = api.client.get("/v1/heartbeat")
    assert beat.status_code == 200
    assert beat.headers["cache-control"] == "no-store"
    assert beat.json()["environment"] == "staging"
    assert beat.json()["data"]["datasets"] == {}
    job = api.ingest_and_run("people", PEOPLE)
    body = api.client.get("/v1/heartbeat").json()
    assert body["data"]["datasets"] == {"people": job["version"]}
    assert body["checks"]["store"]["ok"] and body["checks"]["queue"]["ok"]
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_heartbeat_is_503_when_the_store_fails(api, tmp_path):
    api.state.store.close()
    api.state.store.path = tmp_path / "missing-dir" / "state.sqlite"
    beat = api.client.get("/v1/heartbeat")
    assert beat.status_code == 503
    assert beat.json()["checks"]["store"]["ok"] is False


def test_metrics_are_prometheus_text(api):
    api.client.get("/v1/heartbeat")
    text = api.client.get("/metrics").text
    assert 'madbwpu_r_api_requests_total{route="/v1/heartbeat",status="200"}' in text
    assert "madbwpu_r_queue_ready" in text
    assert 'madbwpu_r_queue_workers{queue="ingest"} 0.0' in text


def test_metrics_count_the_workers_present_in_the_queue(api):
    """Worker counts come from the queue, so a worker on any machine counts; no file is read."""
    from madbwpu_r.queue import open_queue

    # Another process's view of the same queue: the worker announces itself there.
    with open_queue(api.state.settings.queue_url or api.state.paths.default_queue_url) as q:
        q.announce("ingest-1", ["ingest"], ttl=60)
        q.announce("ingest-2", ["ingest"], ttl=60)
        assert 'madbwpu_r_queue_workers{queue="ingest"} 2.0' in api.client.get("/metrics").text
        q.retire("ingest-1")
    assert 'madbwpu_r_queue_workers{queue="ingest"} 1.0' in api.client.get("/metrics").text
    assert not api.state.paths.supervisor_status.exists()


def test_a_rerun_after_the_upload_was_consumed_returns_the_published_version(api):
    """A worker that died between publishing and acking re-runs the job: nothing changes twice."""
    from madbwpu_r.queue import Job

    done = api.ingest_and_run("people", PEOPLE)
    info = api.state.queue.get(done["id"])
    assert api.uploads() == []  # the upload was consumed
    rerun = Job(info.id, info.queue, info.payload, 2, info.max_attempts, 0, info.enqueued_at)
    assert api.handler(rerun) == {"dataset": "people", "digest": done["version"]}
    assert len(api.client.get("/v1/datasets/people/versions").json()["versions"]) == 1


def test_an_upload_over_the_limit_is_413_and_stores_nothing(make_api):
    api = make_api()
    api.state.settings.max_upload_bytes = 100_000
    body = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(20_000))
    response = api.ingest("people", body)
    assert response.status_code == 413, response.text
    assert "limit of 100000 bytes" in response.json()["detail"]
    assert api.uploads() == [] and api.state.queue.list() == []


def test_a_large_upload_is_streamed_into_the_blob_store_whole(api):
    body = b"id,name\n" + b"".join(b"%d,name-%d\n" % (i, i) for i in range(200_000))
    accepted = api.ingest("big", body)
    assert accepted.status_code == 202, accepted.text
    (key,) = api.uploads()
    assert api.state.blobs.read_bytes(key) == body
    api.drain()
    job = api.client.get(accepted.json()["status_url"]).json()
    assert job["status"] == "succeeded" and api.uploads() == []
    version = api.client.get("/v1/datasets/big").json()["current"]
    assert version["row_count"] == 200_000
    assert api.state.blobs.exists(f"sha256/{version['sha256'][:2]}/{version['sha256']}")
