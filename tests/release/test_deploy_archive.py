"""Step 8's archive: the deploy's segment of the project log, written once into the target
environment's blob store (files, and moto's S3 server), then signed off and judged from there;
a re-run after a crash, or after losing a race, takes the whole archive that is there."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

import madbwpu_r.audit.archive as audit_archive
import madbwpu_r.release.archive as release_archive
from madbwpu_r.audit.archive import load_archive, pending
from madbwpu_r.audit.layout import open_log
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.blobs import open_blobs
from madbwpu_r.release.archive import (
    deploy_archive_url,
    export_deploy,
    sign_off_deploy,
    verified_signoff,
)
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.service import Releases
from madbwpu_r.release.store import ArchiveRecord
from tests.blobs.conftest import S3Server

MEMBER = "audit/archives/project/deploy-{}/archive.json"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Releases]:
    """An initialised project whose log holds the entries of two deploys."""
    with Releases(tmp_path / "d") as releases:
        releases.init()
        log = open_log(releases.data_dir, "project")
        log.append([AuditRecord("deployer", "deploy.requested", "deploy:dep-1"),
                    AuditRecord("deployer", "deploy.requested", "deploy:dep-2"),
                    AuditRecord("pipeline", "deploy.step", "deploy:dep-1/verify")])  # fmt: skip
        log.close()
        yield releases


@pytest.fixture(params=["file", "s3"])
def blob_url(request: pytest.FixtureRequest, tmp_path: Path, aws_env: Callable[[str], None]) -> str:
    """The target environment's blob store, as `up` records it in endpoints.json."""
    if request.param == "file":
        return "file://" + str(tmp_path / "d" / "production" / "blobs")
    server: S3Server = request.getfixturevalue("s3_server")
    aws_env(server.url)
    return f"s3://t{uuid.uuid4().hex[:16]}/blobs/production?create=1"


def archived_entries(svc: Releases) -> list:
    log = open_log(svc.data_dir, "project")
    try:
        return log.query(action="audit.archive", limit=100)
    finally:
        log.close()


def test_the_archive_lives_in_the_blob_store_and_is_signed_off_there(
    svc: Releases, blob_url: str
) -> None:
    archive = export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    assert archive.path == deploy_archive_url(blob_url, "dep-1")
    assert str(archive.path).split("?")[0].endswith("/audit/archives/project/deploy-dep-1")
    targets = [e["target"] for e in archive.doc["entries"]]  # the range holding dep-1's
    assert targets == ["deploy:dep-1", "deploy:dep-2", "deploy:dep-1/verify"]
    with open_blobs(blob_url) as blobs:
        assert [b.key for b in blobs.list("audit/")] == [MEMBER.format("dep-1")]
    assert not (svc.data_dir / "audit" / "archives").exists()  # nothing local
    log = open_log(svc.data_dir, "project")
    assert [p.path for p in pending(log, "project")] == [archive.path]
    log.close()

    svc.store.put_archive(ArchiveRecord("dep-1", archive.digest, str(archive.path), 0.0))
    assert not verified_signoff(svc.store, svc.keys, "dep-1")
    with pytest.raises(Refused, match="compliance role"):
        sign_off_deploy(svc.data_dir, svc.store, svc.keys, "dep-1", "deployer")
    sign_off_deploy(svc.data_dir, svc.store, svc.keys, "dep-1", "compliance")
    assert verified_signoff(svc.store, svc.keys, "dep-1")
    with open_blobs(blob_url) as blobs:
        signoffs = [b.key for b in blobs.list("audit/archives/project/deploy-dep-1/signoffs/")]
        assert len(signoffs) == 1 and "/compliance-" in signoffs[0]
        # An archive edited in the store is no longer a signed-off one.
        doc = orjson.loads(blobs.read_bytes(MEMBER.format("dep-1")))
        doc["entries"][0]["target"] = "deploy:dep-9"
        blobs.delete(MEMBER.format("dep-1"))
        blobs.put(MEMBER.format("dep-1"), orjson.dumps(doc))
    assert not verified_signoff(svc.store, svc.keys, "dep-1")


def test_a_rerun_takes_the_archive_already_written(svc: Releases, blob_url: str) -> None:
    first = export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    again = export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    assert again.digest == first.digest and again.path == first.path
    assert len(archived_entries(svc)) == 1


def test_killed_between_the_archive_and_its_log_entry(
    svc: Releases, blob_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Killed(BaseException):
        pass

    def killed(*args: object) -> AuditRecord:
        raise Killed  # the process dies after the put, before the log's entry

    with monkeypatch.context() as m:
        m.setattr(audit_archive, "_archived", killed)
        with pytest.raises(Killed):
            export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    assert archived_entries(svc) == []  # written, but `audit pending` would not list it
    resumed = export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    assert [e.evidence["archive"] for e in archived_entries(svc)] == [resumed.digest]
    export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    assert len(archived_entries(svc)) == 1


def test_a_writer_that_lost_the_race_takes_the_winners_archive(
    svc: Releases, blob_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    # The loser checked before the winner wrote: only the create-only write can stop it now.
    monkeypatch.setattr(release_archive, "archive_exists", lambda where: False)
    monkeypatch.setattr(audit_archive, "archive_exists", lambda where: False)
    loser = export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    assert loser.digest == winner.digest
    assert load_archive(winner.path).digest == winner.digest  # the winner's bytes, unchanged
    assert len(archived_entries(svc)) == 1


def test_what_is_not_the_deploys_whole_archive_is_refused(svc: Releases, blob_url: str) -> None:
    other = export_deploy(svc.data_dir, svc.keys, "dep-2", blob_url)
    with open_blobs(blob_url) as blobs:
        blobs.put(MEMBER.format("dep-1"), other.raw)  # another deploy's archive, in its place
        blobs.put(MEMBER.format("dep-3"), other.raw[: len(other.raw) // 2])  # cut short
    with pytest.raises(Refused, match="not the project log's archive of deploy dep-1"):
        export_deploy(svc.data_dir, svc.keys, "dep-1", blob_url)
    with pytest.raises(Refused, match="not a whole archive") as refused:
        export_deploy(svc.data_dir, svc.keys, "dep-3", blob_url)
    assert refused.value.code == "archive-damaged"
    with open_blobs(blob_url) as blobs:  # nothing was replaced
        assert blobs.read_bytes(MEMBER.format("dep-1")) == other.raw
        assert blobs.read_bytes(MEMBER.format("dep-3")) == other.raw[: len(other.raw) // 2]
