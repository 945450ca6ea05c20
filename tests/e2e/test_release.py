"""The release workflow on real processes: ingest to staging, cut, QA, deploy, read, roll back.

A reader runs through the production edge during the second cutover and no request fails.
Every bypass tried here is refused and recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from madbwpu_r.release.grant import mint_grant
from madbwpu_r.release.project import open_release_store
from madbwpu_r.signing import SigningKey
from tests.e2e.release_stack import TOKEN, Project
from tests.e2e.release_stack import ReleaseStack as Running


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Project]:
    running = Running(tmp_path_factory.mktemp("release") / "data")
    p = Project(running)
    out = p.cli("init").stdout
    assert f"created guardrail {TOKEN}" in out
    yield p
    running.stop()


class Reader(threading.Thread):
    """Reads a dataset through the production edge as fast as it can; counts every failure."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    r = http.get(self.url)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    self.ok += 1
                    version = r.json()["version"]
                    if not self.versions or self.versions[-1] != version:
                        self.versions.append(version)


@pytest.mark.timeout(1200)  # a whole stack and many CLI processes on a shared machine
def test_release_workflow_end_to_end(project: Project):
    p, run = project, project.running
    assert run.ingest("staging", "people", b"id,name\n1,ann\n2,bob\n")["status"] == "succeeded"
    assert run.ingest("staging", "places", b"id,city\n1,oslo\n")["status"] == "succeeded"
    r1 = p.cut()
    assert len(r1) == 64
    assert r1[:16] in p.cli("release", "list").stdout

    # No signoff: the deploy stops at QA and says what is missing (exit 2: waiting).
    first = p.cli(
        "deploy", r1, "--to", "production", "--guardrail", TOKEN, "--as", "deployer", ok=2
    )
    assert "[x] Validate staging data sync" in first.stdout
    assert "[x] Validate API heartbeat" in first.stdout
    assert "waiting for QA signoff" in first.stderr
    deploy1 = first.stderr.split("--resume ")[1].split()[0]
    assert run.http.get(f"{p.api('production')}/v1/release").json()["release_id"] is None

    # Self-signoff by the requester and a signoff without the qa role are refused.
    assert "qa role" in p.cli("qa", "signoff", r1[:12], "--as", "deployer", ok=1).stderr
    assert [e.outcome for e in p.events("qa.signoff")] == ["refused"]
    p.cli("qa", "signoff", r1[:12], "--as", "qa", "--note", "checked the rows")

    done = p.cli("deploy", "--resume", deploy1, "--as", "deployer")
    assert f"Guardrail token `{TOKEN}` validated" in done.stdout
    assert "[x] Trigger production rollout after QA signoff" in done.stdout
    assert "succeeded" in done.stdout
    served = run.http.get(f"{p.api('production')}/v1/release").json()
    assert served["release_id"] == r1 and served["verified"]
    rows = run.http.get(f"{p.edge('production')}/v1/datasets/people/rows").json()
    assert rows["rows"] == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
    assert "waits for compliance: madbwpu-r audit signoff" in p.cli("deploy", "status").stdout
    # The deploy's archive is in production's blob store (embedded: a directory), not in DIR.
    archive1 = p.archive_of(deploy1)
    assert archive1.startswith(f"file://{p.dir.resolve()}/production/blobs/audit/archives/project/")
    assert Path(urlsplit(archive1).path, "archive.json").is_file()
    assert not (p.dir / "audit" / "archives").exists()

    # Second release: staging changes; production keeps serving release 1 meanwhile.
    assert (
        run.ingest("staging", "people", b"id,name\n1,ann\n2,bob\n3,cy\n")["status"] == "succeeded"
    )
    assert (
        run.http.get(f"{p.edge('production')}/v1/datasets/people/rows").json()["rows"][-1]["name"]
        == "bob"
    )
    r2 = p.cut()
    diff = p.cli("release", "diff", r1[:12], r2[:12]).stdout
    assert "~ people: 2 -> 3 rows" in diff and "places" not in diff
    p.cli("qa", "signoff", r2[:12], "--as", "qa")

    # The first deploy's archive is not signed off by compliance yet: the guardrail refuses.
    refused = p.cli(
        "deploy", r2, "--to", "production", "--guardrail", TOKEN, "--as", "deployer", ok=1
    )
    assert "security.archives_signed_off" in refused.stderr and deploy1 in refused.stderr
    p.cli("audit", "signoff", archive1, "--as", "compliance")

    reader = Reader(f"{p.edge('production')}/v1/datasets/people/rows")
    reader.start()
    while reader.ok < 20:
        time.sleep(0.01)
    second = p.cli("deploy", r2, "--to", "production", "--guardrail", TOKEN, "--as", "deployer")
    time.sleep(0.3)
    reader.stop.set()
    reader.join()
    assert "succeeded" in second.stdout
    assert reader.failures == [], reader.failures[:5]
    assert reader.versions[0] != reader.versions[-1] and len(reader.versions) == 2
    assert (
        run.http.get(f"{p.edge('production')}/v1/datasets/people/rows").json()["rows"][-1]["name"]
        == "cy"
    )
    # places did not change, so its cached entry was not purged
    assert "dataset:people" in second.stdout and "dataset:places" not in second.stdout

    # Rollback to release 1 goes through the same gates (deploy 2's archive first).
    deploy2 = [d for d in p.events("deploy.succeeded")][-1].target
    assert p.cli(
        "rollback",
        "--env",
        "production",
        "--to",
        r1[:12],
        "--guardrail",
        TOKEN,
        "--as",
        "deployer",
        ok=1,
    )
    p.cli("audit", "signoff", p.archive_of(deploy2), "--as", "compliance")
    back = p.cli(
        "rollback", "--env", "production", "--to", r1[:12], "--guardrail", TOKEN, "--as", "deployer"
    )
    assert "succeeded" in back.stdout
    assert run.http.get(f"{p.api('production')}/v1/release").json()["release_id"] == r1
    assert (
        run.http.get(f"{p.edge('production')}/v1/datasets/people/rows").json()["rows"][-1]["name"]
        == "bob"
    )
    # a release never deployed cannot be the target of a rollback
    run.ingest("staging", "people", b"id,name\n9,zed\n")
    r3 = p.cut()
    p.cli("qa", "signoff", r3[:12], "--as", "qa")
    never = p.cli("rollback", "--to", r3[:12], "--guardrail", TOKEN, "--as", "deployer", ok=1)
    assert "never deployed" in never.stderr


@pytest.mark.timeout(1200)  # a whole stack and many CLI processes on a shared machine
def test_bypass_attempts_are_refused_and_recorded(project: Project):
    p, run = project, project.running
    http = run.http
    # A direct ingest into production, even with the write token.
    r = http.post(
        f"{p.api('production')}/v1/datasets/people/ingest",
        content=b"id,name\n1,evil\n",
        headers={
            "Authorization": f"Bearer {run.tokens['production']['write_token']}",
            "Content-Type": "text/csv",
        },
    )
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    assert "madbwpu-r deploy" in r.json()["detail"] and r.json()["pipeline"] == "madbwpu-r deploy"
    refusals = p.events("ingest.refused")
    assert refusals and refusals[-1].actor == "write-token holder"

    # A direct call to the switch endpoint: no grant, a forged grant, a replayed grant.
    cut = f"{p.api('production')}/v1/release/cutover"
    assert http.post(cut, content=b"{}").status_code == 400
    manifest = http.get(f"{p.api('production')}/v1/release").json()
    release_id = manifest["release_id"]
    store = open_release_store(p.dir)
    doc = store.release(release_id).to_json()
    store.close()
    forged = mint_grant(
        SigningKey.generate("pipeline"),
        project="x",
        release_id=release_id,
        environment="production",
        deploy_id="dep-evil",
        action="deploy",
        now=time.time(),
    )
    r = http.post(cut, content=orjson.dumps({"grant": forged.to_json(), "manifest": doc}))
    assert r.status_code == 403 and r.json()["refusal"] == "grant-forged"
    # Replaying the grant of the current release's cutover (read back from production's store).
    import sqlite3

    conn = sqlite3.connect(p.dir / "production" / "state.sqlite")
    grant_doc = (
        conn.execute("SELECT grant_doc FROM cutovers ORDER BY seq DESC LIMIT 1")
        .fetchone()[0]
        .encode()
    )
    r = http.post(
        cut, content=b'{"grant": ' + grant_doc + b', "manifest": ' + orjson.dumps(doc) + b"}"
    )
    assert r.status_code in (403, 409) and r.json()["refusal"] in (
        "grant-replayed",
        "grant-expired",
    )
    codes = {e.evidence["refusal"] for e in p.events("cutover.refused")}
    assert {"no-grant", "grant-forged"} <= codes

    # Moving the pointer by hand in production's store: detected on the next read, never served.
    before = http.get(f"{p.api('production')}/v1/release").json()
    other = [r for r in open_release_store(p.dir).releases() if r.release_id != release_id][0]
    conn.execute("UPDATE release_pointer SET release_id = ?", (other.release_id,))
    conn.commit()
    time.sleep(2.5)
    beat = http.get(f"{p.api('production')}/v1/heartbeat")
    assert beat.status_code == 503 and "no cutover grant allowed" in beat.text
    now = http.get(f"{p.api('production')}/v1/release")
    assert now.status_code == 503 and now.json()["release_id"] == before["release_id"]
    rows = http.get(f"{p.api('production')}/v1/datasets/people/rows")
    assert (
        rows.status_code == 200 and rows.json()["version"] == before["datasets"]["people"]["digest"]
    )
    assert p.events("release.tamper_detected")
    conn.execute("UPDATE release_pointer SET release_id = ?", (release_id,))
    conn.commit()
    conn.close()
    time.sleep(2.5)
    assert http.get(f"{p.api('production')}/v1/heartbeat").status_code == 200

    # An admin holds no role that passes a gate.
    r = p.cli(
        "deploy", release_id, "--to", "production", "--guardrail", TOKEN, "--as", "admin", ok=1
    )
    assert "needs one of the roles: deployer" in r.stderr
    assert "qa role" in p.cli("qa", "signoff", release_id[:12], "--as", "admin", ok=1).stderr
    # An unknown token and a revoked guardrail.
    r = p.cli("guardrail", "validate", "nope-token", "--release", release_id[:12], ok=1)
    assert "FAIL  policy.known" in r.stdout
    assert (
        "does not hold the security role"
        in p.cli("guardrail", "revoke", TOKEN, "--as", "admin", ok=1).stderr
    )
