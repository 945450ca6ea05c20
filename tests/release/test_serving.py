"""`ReleaseGuard`'s costs per read: what it asks the store and the blob store between re-checks.

Production's pointer is on a real SQLite store and its version files in a real file blob store;
both are wrapped to count the calls (and to make the store stop answering). The guard's clock is
the test's, so "within the re-check interval" is a step of that clock, never a wait.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from madbwpu_r.blobs import BlobCache, content_key
from madbwpu_r.blobs.file import FileBlobStore
from madbwpu_r.catalog.versions import VersionLibrary
from madbwpu_r.release.grant import PIPELINE_IDENTITY, mint_grant
from madbwpu_r.release.manifest import DatasetEntry, Manifest
from madbwpu_r.release.pointer import PointerStore
from madbwpu_r.release.serving import RECHECK_SECONDS, ReleaseGuard, ServedRelease
from madbwpu_r.store import MetadataStore, open_store
from madbwpu_r.store.errors import StoreError
from madbwpu_r.store.port import Column
from tests.release.keys import Directory

PROJECT = "madbwpu-r:test"
SCHEMA = (Column("id", "integer"), Column("name", "text"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingBlobs(FileBlobStore):
    """A blob store that counts its stats (on S3 each is a HEAD request)."""

    stats = 0

    def stat(self, key: str) -> Any:
        self.stats += 1
        return super().stat(key)


class CountingStore:
    """Production's store as the guard sees it: pointer reads counted; `down` = unreachable."""

    def __init__(self, inner: MetadataStore) -> None:
        self.inner = inner
        self.reads = 0
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith("pointer"):
            return attr

        def read(*args: Any) -> Any:
            self.reads += 1
            if self.down:
                raise StoreError("the metadata store does not answer")
            return attr(*args)

        return read


class Stack:
    def __init__(self, tmp_path: Path) -> None:
        self.blobs = CountingBlobs(tmp_path / "blobs")
        self.files = VersionLibrary(self.blobs, BlobCache(self.blobs, tmp_path / "cache"))
        self.inner = open_store(f"sqlite:///{tmp_path}/state.sqlite")
        self.store = CountingStore(self.inner)
        self.keys = Directory()
        self.pipeline = self.keys.add(PIPELINE_IDENTITY, "service-pipeline")
        self.clock = Clock()
        self.moved: list[tuple[str | None, str]] = []
        self.guard = ReleaseGuard(
            PointerStore(self.store, "production"),  # type: ignore[arg-type]
            self.keys,
            self.files,
            project=PROJECT,
            env="production",
            clock=self.clock,
            moved=self._moved,
        )
        self._n = 0

    def _moved(self, before: ServedRelease | None, after: ServedRelease) -> None:
        self.moved.append((before.release_id if before else None, after.release_id))

    def manifest(self, *datasets: str) -> Manifest:
        self._n += 1
        entries = []
        for name in datasets:
            info = self.files.write(name, SCHEMA, [(self._n, name)])
            entries.append(DatasetEntry(name, info.digest, info.row_count, info.checksum,
                                        (("id", "integer"), ("name", "text")), info.sha256))  # fmt: skip
        return Manifest(PROJECT, "staging", "0.1.0", "deployer", time.time(), tuple(entries))

    def cut_over(self, manifest: Manifest) -> None:
        """A cutover as any API process of production makes it (not through this guard)."""
        grant = mint_grant(
            self.pipeline, project=PROJECT, release_id=manifest.release_id,
            environment="production", deploy_id="dep-test", action="deploy", now=time.time(),
        )  # fmt: skip
        PointerStore(self.inner, "production").switch(grant, manifest)

    def served(self) -> str | None:
        served = self.guard.current()
        return served.release_id if served else None


@pytest.fixture
def stack(tmp_path: Path):
    s = Stack(tmp_path)
    yield s
    s.inner.close()


def test_reads_between_rechecks_ask_the_store_nothing(stack: Stack) -> None:
    m1 = stack.manifest("people", "places")
    stack.cut_over(m1)
    assert stack.served() == m1.release_id
    stack.store.reads = stack.blobs.stats = 0
    for _ in range(50):
        assert stack.served() == m1.release_id
    assert (stack.store.reads, stack.blobs.stats) == (0, 0)
    stack.clock.now += RECHECK_SECONDS  # the re-check: the pointer and every served blob
    assert stack.served() == m1.release_id
    assert (stack.store.reads, stack.blobs.stats) == (1, 2)


def test_a_cutover_elsewhere_is_served_at_the_next_recheck_and_announced(stack: Stack) -> None:
    m1, m2 = stack.manifest("people"), stack.manifest("people")
    stack.cut_over(m1)
    assert stack.served() == m1.release_id
    stack.cut_over(m2)  # through another API process of production
    stack.clock.now += RECHECK_SECONDS - 0.5
    assert stack.served() == m1.release_id  # the last decision, whole: m1's manifest and files
    stack.clock.now += 0.5
    assert stack.served() == m2.release_id
    assert stack.moved == [(m1.release_id, m2.release_id)]  # so this process purges its edges


def test_a_cutover_on_this_process_is_served_at_once(stack: Stack) -> None:
    m1, m2 = stack.manifest("people"), stack.manifest("people")
    stack.cut_over(m1)
    assert stack.served() == m1.release_id
    stack.guard.trust_files(m2)
    stack.cut_over(m2)
    assert stack.guard.refresh() is not None  # what production's cutover handler does
    assert stack.served() == m2.release_id
    assert stack.moved == []  # the handler purges the edges itself


def test_an_unreachable_store_is_re_asked_once_per_interval(stack: Stack) -> None:
    m1 = stack.manifest("people", "places")
    stack.cut_over(m1)
    assert stack.served() == m1.release_id
    stack.store.down = True
    stack.clock.now += RECHECK_SECONDS
    stack.store.reads = stack.blobs.stats = 0
    for _ in range(50):  # the last verified release stays served, its files still the same
        assert stack.served() == m1.release_id
    assert stack.guard.problem and "cannot be read" in stack.guard.problem
    assert (stack.store.reads, stack.blobs.stats) == (1, 2)  # one re-check, one stat per blob
    stack.clock.now += RECHECK_SECONDS
    for _ in range(50):
        assert stack.served() == m1.release_id
    assert (stack.store.reads, stack.blobs.stats) == (2, 4)
    stack.store.down = False
    stack.clock.now += RECHECK_SECONDS
    assert stack.served() == m1.release_id and stack.guard.problem is None


def test_while_the_store_is_down_a_changed_file_still_stops_serving(stack: Stack) -> None:
    m1 = stack.manifest("people")
    stack.cut_over(m1)
    assert stack.served() == m1.release_id
    stack.store.down = True
    path = stack.blobs.root / content_key(m1.datasets[0].sha256 or "")
    path.write_bytes(path.read_bytes() + b"edited")
    stack.clock.now += RECHECK_SECONDS
    assert stack.served() is None and "cannot be read" in (stack.guard.problem or "")
