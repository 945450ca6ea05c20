"""Step 5, "Sync data to production": version blobs copied between two real blob stores
(staging on files, production on the S3 test server) by SHA-256, every copy verified."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from madbwpu_r.blobs import content_key, open_blobs
from madbwpu_r.catalog.versions import VersionLibrary
from madbwpu_r.release.manifest import DatasetEntry, Manifest
from madbwpu_r.release.steps import Environments, TierRunner
from madbwpu_r.store.port import Column
from tests.blobs.conftest import AWS_ENV, S3Server

SCHEMA = (Column("id", "integer"), Column("name", "text"))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def sync(tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch):
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    staging = (tmp_path / "staging-blobs").as_uri()
    production = f"s3://t{uuid.uuid4().hex[:16]}/production?create=1"
    envs = Environments({"staging": {"blobs": staging}, "production": {"blobs": production}})
    runner = TierRunner(tmp_path, None, None, envs, "p")  # type: ignore[arg-type]
    with open_blobs(staging) as blobs:
        info = VersionLibrary(blobs).write("people", SCHEMA, [(1, "ann"), (2, "bob")])
    entry = DatasetEntry(
        "people", info.digest, info.row_count, info.checksum,
        tuple((c.name, c.type) for c in SCHEMA), info.sha256,
    )  # fmt: skip
    manifest = Manifest("p", "staging", "0", "deployer", time.time(), (entry,))
    deploy = SimpleNamespace(environment="production")

    def run():
        return runner._data_sync(deploy, manifest, None)  # type: ignore[arg-type]

    return SimpleNamespace(run=run, entry=entry, production=production, staging=staging)


def test_copies_each_blob_once_and_verifies_it(sync):
    first = sync.run()
    assert first.status == "passed", first.detail
    assert first.evidence["copied"] == ["people"]
    with open_blobs(sync.production) as blobs:
        assert blobs.exists(content_key(sync.entry.sha256))
    again = sync.run()
    assert again.status == "passed" and again.evidence == {"copied": [], "present": ["people"]}


def test_a_corrupt_copy_in_production_fails_the_step(sync):
    with open_blobs(sync.production) as blobs:
        blobs.ping()  # creates the bucket (?create=1)
        blobs.put(content_key(sync.entry.sha256), b"not the version file")
    outcome = sync.run()
    assert outcome.status == "failed" and "people" in outcome.detail


def test_a_version_missing_from_staging_fails_the_step(sync):
    with open_blobs(sync.staging) as blobs:
        blobs.delete(content_key(sync.entry.sha256))
    outcome = sync.run()
    assert outcome.status == "failed" and "not in staging's blob store" in outcome.detail
