"""`GET /v1/audit`: signed acts only, compliance and admin only, replays refused, reads recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from madbwpu_r.audit.layout import open_log
from madbwpu_r.identity.acts import make_act
from madbwpu_r.identity.http import SignedRequestAuth
from madbwpu_r.identity.keyring import Keyring
from madbwpu_r.identity.setup import init_project, open_directory
from madbwpu_r.signing import SigningKey, public_key_to_b64
from tests.api.conftest import ApiHarness


@pytest.fixture
def api(make_api: Callable[[], ApiHarness], tmp_path: Path) -> ApiHarness:
    init_project(tmp_path)
    directory = open_directory(tmp_path)
    admin = Keyring(tmp_path).load("admin")
    for name, role in (("carol", "compliance"), ("quinn", "qa")):
        key = Keyring(tmp_path).create(name)
        directory.apply(
            make_act(admin, "identity.add", name, [role], public_key_to_b64(key.public))
        )
    directory.db.close()
    return make_api()


def key(tmp_path: Path, name: str) -> SigningKey:
    return Keyring(tmp_path).load(name)


def test_compliance_reads_the_log_and_the_read_is_recorded(api: ApiHarness, tmp_path: Path) -> None:
    auth = SignedRequestAuth(key(tmp_path, "carol"))
    r = api.client.get("/v1/audit", params={"log": "project", "action": "identity."}, auth=auth)
    assert r.status_code == 200, r.text
    actions = [e["action"] for e in r.json()["entries"]]
    assert actions[:2] == ["identity.init", "identity.add"]
    r = api.client.get("/v1/audit", params={"limit": "5"}, auth=auth)  # the env's own log
    assert r.status_code == 200 and r.json()["log"] == "staging"
    log = open_log(tmp_path, "project")
    assert log.query(action="audit.read")[-1].actor == "carol"
    log.close()
    r = api.client.get("/v1/audit/checkpoint", params={"log": "project"}, auth=auth)
    assert r.status_code == 200 and r.text.startswith("madbwpu-r/project\n")


def test_refusals(api: ApiHarness, tmp_path: Path) -> None:
    r = api.client.get("/v1/audit")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = api.client.get("/v1/audit", auth=SignedRequestAuth(key(tmp_path, "quinn")))
    assert r.status_code == 403
    stranger = SignedRequestAuth(SigningKey.generate("carol"))
    assert api.client.get("/v1/audit", auth=stranger).status_code == 401
    r = api.client.get(
        "/v1/audit", params={"limit": "many"}, auth=SignedRequestAuth(key(tmp_path, "carol"))
    )
    assert r.status_code == 400
    r = api.client.get(
        "/v1/audit", params={"log": "nope"}, auth=SignedRequestAuth(key(tmp_path, "carol"))
    )
    assert r.status_code == 404
    log = open_log(tmp_path, "project")
    assert {e.actor for e in log.query(action="identity.refused")} >= {"quinn", "carol"}
    log.close()


def test_a_captured_request_cannot_be_replayed_or_redirected(
    api: ApiHarness, tmp_path: Path
) -> None:
    signed = httpx.Request("GET", "http://testserver/v1/audit?log=project")
    flow = SignedRequestAuth(key(tmp_path, "carol")).auth_flow(signed)
    headers = dict(next(flow).headers)
    assert api.client.get("/v1/audit?log=project", headers=headers).status_code == 200
    assert api.client.get("/v1/audit?log=project", headers=headers).status_code == 401
    headers["x-madbwpu-nonce"] = "0" * 32  # a fresh nonce does not help: it is signed
    assert api.client.get("/v1/audit?log=project", headers=headers).status_code == 401
    other = dict(next(SignedRequestAuth(key(tmp_path, "carol")).auth_flow(
        httpx.Request("GET", "http://testserver/v1/audit?log=project"))).headers)  # fmt: skip
    assert api.client.get("/v1/audit?log=staging", headers=other).status_code == 401
    stale = {**other, "x-madbwpu-time": "1000"}
    assert api.client.get("/v1/audit?log=project", headers=stale).status_code == 401


def test_an_ingest_and_its_version_are_in_the_environment_log(
    make_api: Callable[[], ApiHarness], tmp_path: Path
) -> None:
    api = make_api()
    status = api.ingest_and_run("cities", b"name,pop\nParis,2100000\n")
    assert status["status"] == "succeeded", status
    log = open_log(tmp_path, "staging")
    entries = list(log.entries())
    log.close()
    assert [e.action for e in entries] == ["ingest.accepted", "version.published"]
    assert entries[1].evidence["version"] == status["version"]
    assert entries[0].detail == f"job {status['id']}" or status["id"] in entries[0].detail


def _open_fds(path: Path) -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += Path(fd.readlink()).name.startswith(path.name)
        except OSError:
            continue
    return count


def test_a_log_that_cannot_be_opened_leaves_nothing_open(tmp_path: Path) -> None:
    """The environment's log on an unreachable store: a 503 each time, and the project's store
    opened before it is closed again (a retry per request would otherwise leak a connection)."""
    from madbwpu_r.api.audit import AuditApi
    from madbwpu_r.problems import ProblemError

    init_project(tmp_path)
    unreachable = "postgresql://postgres@127.0.0.1:9/test?connect_timeout=1"
    audit = AuditApi(tmp_path, "staging", unreachable)
    project = tmp_path / "project.sqlite"
    before = _open_fds(project)
    for _ in range(3):
        with pytest.raises(ProblemError) as refused:
            audit.opened()
        assert refused.value.status == 503
    assert _open_fds(project) == before
