"""The release pipeline on the scale-out engines: `up` on PostgreSQL (each environment's store
and the project's, a fresh schema each), Redis (queue and purges, a fresh prefix) and S3
(moto's server); ingest to staging, cut, QA, deploy to production, then everything checked
where it lives: production's API and edge, its bucket, the deploy's archive in that bucket
(verified and signed off from there) and the guardrail of the next deploy reading it.

One stack for the module and two deploys: the embedded flow's every branch is in
test_release.py; this module shows the same code path holds on the servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from madbwpu_r.blobs import content_key, open_blobs
from madbwpu_r.release.project import open_release_store
from tests.e2e.release_stack import TOKEN, Project, ReleaseStack
from tests.e2e.test_stack import scaled_out_engines

DEPLOY = ("--to", "production", "--guardrail", TOKEN, "--as", "deployer")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Project]:
    data = tmp_path_factory.mktemp("release-scaled-out") / "data"
    with (
        scaled_out_engines(data, project_store=True) as (extra, env),
        pytest.MonkeyPatch.context() as mp,
    ):
        # This process reads the same stores as the CLI: the project's, and the buckets.
        for name, value in env.items():
            if os.environ.get(name) != value:
                mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        running = ReleaseStack(data, *extra, env=env)
        try:
            p = Project(running)
            assert f"created guardrail {TOKEN}" in p.cli("init").stdout
            yield p
        finally:
            running.stop()


def deployed(p: Project, release: str) -> str:
    """Deploy `release` to production through every gate; the deploy's id."""
    done = p.cli("deploy", release, *DEPLOY)
    assert f"Guardrail token `{TOKEN}` validated" in done.stdout, done.stdout
    assert "succeeded" in done.stdout, done.stdout
    return done.stdout.split("deploy ", 1)[1].split(":", 1)[0]


@pytest.mark.timeout(1200)  # a whole stack and many CLI processes on a shared machine
def test_deploy_to_production_on_postgres_redis_and_s3(project: Project) -> None:
    p, run = project, project.running
    blobs_of = {env: run.endpoints[env]["blobs"] for env in ("staging", "production")}
    assert all(url.startswith("s3://") for url in blobs_of.values()), blobs_of
    assert not (p.dir / "project.sqlite").exists()  # the project's store is PostgreSQL's
    assert run.ingest("staging", "people", b"id,name\n1,ann\n2,bob\n")["status"] == "succeeded"
    assert run.ingest("staging", "places", b"id,city\n1,oslo\n")["status"] == "succeeded"
    r1 = p.cut()
    p.cli("qa", "signoff", r1[:12], "--as", "qa")
    deploy1 = deployed(p, r1)

    # Production serves the release, verified; reads through its edge carry its digests.
    served = run.http.get(f"{p.api('production')}/v1/release").json()
    assert served["release_id"] == r1 and served["verified"], served
    store = open_release_store(p.dir)
    manifest = store.release(r1)
    store.close()
    assert manifest is not None and {d.name for d in manifest.datasets} == {"people", "places"}
    for entry in manifest.datasets:
        rows = run.http.get(f"{p.edge('production')}/v1/datasets/{entry.name}/rows")
        assert rows.status_code == 200 and rows.json()["version"] == entry.digest, rows.text
    # The version blobs were copied into production's prefix of the bucket.
    with open_blobs(blobs_of["production"]) as blobs:
        for entry in manifest.datasets:
            assert entry.sha256 and blobs.exists(content_key(entry.sha256)), entry.name

    # The deploy's archive is in production's bucket, and verifies read back from there.
    where = p.archive_of(deploy1)
    assert where.startswith(blobs_of["production"].split("?")[0] + "/audit/archives/project/")
    with open_blobs(blobs_of["production"]) as blobs:
        assert [b.key for b in blobs.list("audit/")] == [
            f"audit/archives/project/deploy-{deploy1}/archive.json"
        ]
    assert not (p.dir / "audit" / "archives").exists()  # nothing on the deploying machine
    assert where in p.cli("audit", "pending", "--log", "project").stdout
    verified = p.cli("audit", "verify", where).stdout
    assert verified.startswith(f"OK {where}:") and "signed off" not in verified, verified

    # The next deploy's guardrail reads that archive: unsigned, it refuses; signed off, it passes.
    assert run.ingest("staging", "people", b"id,name\n1,ann\n2,bob\n3,cy\n")["status"] == (
        "succeeded"
    )
    r2 = p.cut()
    p.cli("qa", "signoff", r2[:12], "--as", "qa")
    refused = p.cli("deploy", r2, *DEPLOY, ok=1)
    assert "security.archives_signed_off" in refused.stderr and deploy1 in refused.stderr
    p.cli("audit", "signoff", where, "--as", "compliance")
    with open_blobs(blobs_of["production"]) as blobs:
        signoffs = [b.key for b in blobs.list(f"audit/archives/project/deploy-{deploy1}/signoffs/")]
    assert len(signoffs) == 1 and "/compliance-" in signoffs[0]
    assert "no archive awaits signoff" in p.cli("audit", "pending", "--log", "project").stdout
    assert "signed off by compliance" in p.cli("audit", "verify", where).stdout
    deploy2 = deployed(p, r2)
    assert deploy2 != deploy1
    assert run.http.get(f"{p.api('production')}/v1/release").json()["release_id"] == r2
    rows = run.http.get(f"{p.edge('production')}/v1/datasets/people/rows").json()
    assert rows["rows"][-1] == {"id": 3, "name": "cy"}
    p.archive_of(deploy2)  # in production's bucket too, awaiting its signoff
