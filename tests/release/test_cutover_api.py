"""Production's cutover endpoint and verified serving, in process, with the project's and
production's stores on SQLite files or on the PostgreSQL server."""

from __future__ import annotations

import sqlite3
import time

import orjson
import psycopg
import pytest
from starlette.testclient import TestClient

from madbwpu_r.api.app import create_app
from madbwpu_r.api.state import ApiSettings
from madbwpu_r.audit.layout import PROJECT_STORE_ENV
from madbwpu_r.blobs import content_key, open_blobs
from madbwpu_r.catalog.versions import VersionLibrary
from madbwpu_r.release import serving
from madbwpu_r.release.grant import mint_grant
from madbwpu_r.release.manifest import DatasetEntry, Manifest
from madbwpu_r.release.service import Releases
from madbwpu_r.store.port import Column
from tests.queue.queue_backends import PG_URL, base_url
from tests.release.test_serving import Clock

TOKENS = {"write_token": "w" * 32, "worker_token": "k" * 32, "purge_token": "p" * 32}


class Production:
    def __init__(self, tmp_path, store_url: str | None = None):
        self.dir = tmp_path
        with Releases(tmp_path) as svc:
            svc.init()
            self.pipeline = svc.keys.signing_key("pipeline")
            self.project = svc.project
        self.settings = ApiSettings(
            env="production", data_dir=tmp_path, store_url=store_url, **TOKENS
        )
        self.client = TestClient(create_app(self.settings), raise_server_exceptions=False)
        self.blobs = open_blobs(self.settings.blobs_url())
        self.files = VersionLibrary(self.blobs)

    def manifest(self, *rows) -> Manifest:
        info = self.files.write("people", (Column("id", "integer"), Column("name", "text")), rows)
        entry = DatasetEntry(
            "people",
            info.digest,
            info.row_count,
            info.checksum,
            (("id", "integer"), ("name", "text")),
            info.sha256,
        )
        return Manifest(self.project, "staging", "0.1.0", "deployer", time.time(), (entry,))

    def grant(self, manifest: Manifest, **over):
        args = dict(
            project=self.project, release_id=manifest.release_id, environment="production",
            deploy_id="dep-test", action="deploy", now=time.time(),
        )  # fmt: skip
        args.update(over)
        return mint_grant(
            over.pop("key", self.pipeline), **{k: v for k, v in args.items() if k != "key"}
        )

    def cutover(self, grant, manifest: Manifest):
        body = orjson.dumps({"grant": grant.to_json(), "manifest": manifest.to_json()})
        return self.client.post("/v1/release/cutover", content=body)


@pytest.fixture(params=["sqlite", "postgres"])
def prod(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        p = Production(tmp_path)
        with p.client:
            yield p
        return
    # The project's store and production's store each on a PostgreSQL schema of their own.
    project = base_url("postgres", tmp_path)
    production = base_url("postgres", tmp_path)
    monkeypatch.setenv(PROJECT_STORE_ENV, next(project))
    p = Production(tmp_path, store_url=next(production))
    with p.client:
        yield p
    for schema in (project, production):
        next(schema, None)  # drops it


def test_cutover_switches_and_serves_then_refuses_a_replay(prod):
    m = prod.manifest((1, "ann"), (2, "bob"))
    assert prod.client.get("/v1/datasets/people/rows").status_code == 404
    g = prod.grant(m)
    r = prod.cutover(g, m)
    assert r.status_code == 200, r.text
    assert r.json()["purged"][0] == "dataset:people"
    assert prod.client.get("/v1/release").json()["release_id"] == m.release_id
    rows = prod.client.get("/v1/datasets/people/rows").json()
    assert rows["version"] == m.datasets[0].digest and len(rows["rows"]) == 2
    again = prod.cutover(g, m)
    assert again.status_code == 409 and again.json()["refusal"] == "grant-replayed"


def test_grant_for_another_release_or_environment_or_expired(prod):
    m1, m2 = prod.manifest((1, "ann")), prod.manifest((1, "bob"))
    r = prod.cutover(prod.grant(m1), m2)  # the manifest is not the granted release
    assert r.status_code == 403 and r.json()["refusal"] == "manifest-altered"
    r = prod.cutover(prod.grant(m1, environment="staging"), m1)
    assert r.status_code == 403 and r.json()["refusal"] == "grant-other-environment"
    r = prod.cutover(prod.grant(m1, now=time.time() - 3600), m1)
    assert r.status_code == 403 and r.json()["refusal"] == "grant-expired"
    r = prod.cutover(prod.grant(m1, project="someone-else"), m1)
    assert r.status_code == 403 and r.json()["refusal"] == "grant-other-project"
    assert prod.client.get("/v1/release").json()["release_id"] is None


def test_edited_version_file_is_never_served(prod, monkeypatch):
    monkeypatch.setattr(serving, "RECHECK_SECONDS", 0.0)  # every read re-checks the blobs
    m1 = prod.manifest((1, "ann"))
    assert prod.cutover(prod.grant(m1), m1).status_code == 200
    m2 = prod.manifest((1, "cyd"), (2, "dan"))
    assert prod.cutover(prod.grant(m2), m2).status_code == 200
    # Production's own copy, edited by hand in its blob store.
    path = prod.blobs.root / content_key(m2.datasets[0].sha256)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE rows SET c1 = 'eve'")
    conn.commit()
    conn.close()
    beat = prod.client.get("/v1/heartbeat")
    assert beat.status_code == 503 and "does not match its digest" in beat.text
    # The edited release is not served; its own files changed, so nothing verified is left.
    rows = prod.client.get("/v1/datasets/people/rows")
    assert rows.status_code == 503 and "eve" not in rows.text
    assert "does not match its digest" in rows.json()["detail"]


def by_hand(prod: Production, sql: str) -> None:
    """An edit made directly in production's store (SQLite file or PostgreSQL schema)."""
    if prod.settings.store_url is None:
        conn = sqlite3.connect(prod.settings.paths.state_db)
        conn.execute(sql)
        conn.commit()
        conn.close()
        return
    schema = prod.settings.store_url.split("schema=")[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(sql)


def test_removed_audit_entry_is_detected(prod):
    m = prod.manifest((1, "ann"))
    assert prod.cutover(prod.grant(m), m).status_code == 200
    fresh = TestClient(create_app(prod.settings), raise_server_exceptions=False)
    by_hand(prod, "DELETE FROM audit_entries WHERE action = 'release.cutover'")
    with fresh:
        r = fresh.get("/v1/release")
        assert r.status_code == 503 and "no matching entry in the audit log" in r.json()["problem"]
        assert fresh.get("/v1/datasets/people/rows").status_code == 503


def test_staging_has_no_cutover_and_production_no_ingest(tmp_path):
    with Releases(tmp_path) as svc:
        svc.init()
    staging = TestClient(create_app(ApiSettings(env="staging", data_dir=tmp_path, **TOKENS)))
    with staging:
        r = staging.post("/v1/release/cutover", content=b"{}")
        assert r.status_code == 409 and r.json()["refusal"] == "not-production"
    production = TestClient(create_app(ApiSettings(env="production", data_dir=tmp_path, **TOKENS)))
    with production:
        r = production.post(
            "/v1/datasets/x/ingest", content=b"a\n1\n",
            headers={"Authorization": f"Bearer {TOKENS['write_token']}", "Content-Type": "text/csv"},
        )  # fmt: skip
        assert r.status_code == 409 and r.json()["refusal"] == "production-ingest"


def test_pointer_moved_by_hand_is_never_served(prod):
    m1 = prod.manifest((1, "ann"))
    assert prod.cutover(prod.grant(m1), m1).status_code == 200
    m2 = prod.manifest((1, "bob"))
    assert prod.cutover(prod.grant(m2), m2).status_code == 200
    # Back to the first release, by SQL, without a grant: a new process must not serve it.
    by_hand(prod, f"UPDATE release_pointer SET release_id = '{m1.release_id}', cutover_seq = 1")
    fresh = TestClient(create_app(prod.settings), raise_server_exceptions=False)
    with fresh:
        r = fresh.get("/v1/release")
        assert r.status_code == 503 and "not the latest cutover" in r.json()["problem"]
        rows = fresh.get("/v1/datasets/people/rows")
        assert rows.status_code == 503 and "ann" not in rows.text
    events = [e for e in prod_events(prod) if e.action == "release.tamper_detected"]
    assert events and "not the latest cutover" in events[-1].evidence["problem"]


def prod_events(prod: Production):
    with Releases(prod.dir) as svc:
        return svc.store.events()


def test_a_cutover_through_another_api_process_is_served_at_its_recheck(prod):
    """Two API processes of production: the one that did not take the cutover serves the new
    release from its next re-check on, and purges the edges of what it served until then."""
    rows = "/v1/datasets/people/rows"
    m1 = prod.manifest((1, "ann"))
    assert prod.cutover(prod.grant(m1), m1).status_code == 200
    other = create_app(prod.settings)
    clock = Clock()
    other.state.release.guard.clock = clock
    purged: list[list[str]] = []
    with TestClient(other, raise_server_exceptions=False) as second:
        for app in (prod.client.app, other):  # whichever relay delivers the purge, it is seen
            app.state.api.relay.deliverers["purge"] = lambda row: purged.append(row.payload["keys"])
        assert second.get(rows).json()["rows"] == [{"id": 1, "name": "ann"}]
        m2 = prod.manifest((1, "bob"))
        assert prod.cutover(prod.grant(m2), m2).status_code == 200
        assert prod.client.get(rows).json()["rows"] == [{"id": 1, "name": "bob"}]
        assert second.get(rows).json()["rows"] == [{"id": 1, "name": "ann"}]  # the last decision
        assert purged == [["dataset:people", "datasets", "release"]]  # the cutover's own
        clock.now += serving.RECHECK_SECONDS
        assert second.get(rows).json()["rows"] == [{"id": 1, "name": "bob"}]
        assert second.get("/v1/release").json()["release_id"] == m2.release_id
        # The second process's purge too, at least once: both relays may hand over its row.
        assert len(purged) >= 2
        assert all(keys == ["dataset:people", "datasets", "release"] for keys in purged)


def test_the_cutovers_purge_commits_with_it_and_outlives_a_failed_delivery(prod):
    """The purge of what a cutover changed is an outbox row of the cutover's own transaction:
    when it cannot be delivered at once (the process dies, the edges are unreachable) the
    relay delivers it later, and a refused cutover queues none."""
    relay = prod.client.app.state.api.relay
    store = prod.client.app.state.api.store
    delivered: list[list[str]] = []

    def unreachable(row):
        raise ConnectionError("the edges are unreachable")

    relay.deliverers["purge"] = unreachable
    m = prod.manifest((1, "ann"))
    g = prod.grant(m)
    r = prod.cutover(g, m)
    assert r.status_code == 200 and r.json()["purge"] is None, r.text
    pending = [row.payload["keys"] for row in store.pending(kinds=["purge"])]
    assert pending == [["dataset:people", "datasets", "release"]]
    assert prod.cutover(g, m).status_code == 409  # a replay changes nothing, queues nothing
    assert len(store.pending(kinds=["purge"])) == 1
    relay.deliverers["purge"] = lambda row: delivered.append(row.payload["keys"])
    relay.flush()
    assert delivered == pending and store.pending(kinds=["purge"]) == []


def test_a_pod_with_its_own_data_dir_accepts_the_pipelines_grant(tmp_path, monkeypatch):
    """On Kubernetes the deploying machine and production's pods share only the project's
    store (PostgreSQL), not a data directory: they still agree on the project a grant names."""
    project = base_url("postgres", tmp_path)
    production = base_url("postgres", tmp_path)
    monkeypatch.setenv(PROJECT_STORE_ENV, next(project))
    deployer = Production(tmp_path / "deployer")
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    settings = ApiSettings(
        env="production", data_dir=pod_dir, store_url=next(production),
        blob_url=deployer.settings.blobs_url(), **TOKENS,
    )  # fmt: skip
    pod = TestClient(create_app(settings), raise_server_exceptions=False)
    with pod:
        m = deployer.manifest((1, "ann"))
        body = orjson.dumps({"grant": deployer.grant(m).to_json(), "manifest": m.to_json()})
        r = pod.post("/v1/release/cutover", content=body)
        assert r.status_code == 200, r.text
        assert pod.get("/v1/datasets/people/rows").json()["rows"] == [{"id": 1, "name": "ann"}]
    deployer.client.close()
    for schema in (project, production):
        next(schema, None)
