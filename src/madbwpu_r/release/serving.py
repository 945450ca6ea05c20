"""What production serves: the release its pointer names, only while that pointer verifies.

Before any read is answered from a release, its pointer must be backed by the latest entry of
the environment's chained cutover log, by a cutover grant signed by the project's pipeline for
exactly that release and consumed exactly once, and every version file must match its digest.
A pointer or file changed by hand is never served: the last verified release stays served (or,
in a process that never verified one, nothing is), the heartbeat turns 503 naming the problem,
and the problem is reported to the event log once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from madbwpu_r.blobs import BlobNotFound, BlobStoreError, DigestMismatch, content_key
from madbwpu_r.catalog.versions import VersionLibrary
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.grant import PIPELINE_IDENTITY, verify_grant
from madbwpu_r.release.manifest import DatasetEntry, Manifest
from madbwpu_r.release.pointer import GENESIS, PointerStore, cutover_hash, grant_digest
from madbwpu_r.release.verify_files import verify_version_file
from madbwpu_r.signing import KeyDirectory
from madbwpu_r.store.port import Column, DatasetInfo, VersionInfo

__all__ = ["ReleaseGuard", "ReleaseView", "ServedRelease"]

RECHECK_SECONDS = 2.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedRelease:
    release_id: str
    manifest: Manifest
    cutover_seq: int
    grant_id: str
    deploy_id: str
    switched_at: float


class ReleaseGuard:
    """The one decision every production read takes: which verified release to serve.

    It is re-checked (pointer, cutover log, grant, audit entry, a stat of every served blob) at
    most every RECHECK_SECONDS, whatever the outcome; reads in between take the last decision
    and ask neither the store nor the blob store anything, so an outage of either costs one
    re-check per interval, not a query or an S3 HEAD per read. A decision is one immutable
    `ServedRelease`, so a read sees a whole release. A cutover made on this process is seen at
    once (`refresh`); one made through another API process of the environment at this
    process's next re-check, which then calls `moved` so that the edges can be purged of what
    this process served meanwhile.
    """

    def __init__(
        self,
        pointers: PointerStore,
        keys: KeyDirectory,
        versions: VersionLibrary,
        *,
        project: str,
        env: str,
        report: Callable[[str], None] = lambda problem: None,
        moved: Callable[[ServedRelease, ServedRelease], None] = lambda before, after: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.pointers = pointers
        self.keys = keys
        self.versions = versions
        self.project = project
        self.env = env
        self.report = report
        self.moved = moved
        self.clock = clock
        self.served: ServedRelease | None = None
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._checked_at: float | None = None  # when the last decision was taken
        # sha256 -> (size, modified) of the blob-store object whose rows were verified.
        self._files: dict[str, tuple[int, float | None]] = {}
        self._reported: set[str] = set()

    def _fresh(self) -> bool:
        at = self._checked_at
        return at is not None and self.clock() - at < RECHECK_SECONDS

    def current(self) -> ServedRelease | None:
        """The verified release to serve now (possibly the last verified one)."""
        if self._fresh():
            return self.served
        # While another read re-checks (which may fetch and re-read files), serve the last
        # decision; only before the first one is there nothing to serve but what it finds.
        if not self._lock.acquire(blocking=self._checked_at is None):
            return self.served
        try:
            return self.served if self._fresh() else self._recheck(announce=True)
        finally:
            self._lock.release()

    def refresh(self) -> ServedRelease | None:
        """Re-check now: around a cutover made on this process, whose handler purges the edges."""
        with self._lock:
            return self._recheck(announce=False)

    def _recheck(self, announce: bool) -> ServedRelease | None:
        before = self.served
        try:
            try:
                key, cutovers, consumed, audited = self.pointers.snapshot()
            except Exception as exc:  # noqa: BLE001 - an unreadable store is a problem to name, not a 500
                raise Refused(
                    "pointer-unreadable", f"the release pointer cannot be read: {exc}"
                ) from None
            verified = self._verify(key, cutovers, consumed, audited)
        except Refused as exc:
            served = self._fail(exc.message)
            self._checked_at = self.clock()
            return served
        self.served, self.problem = verified, None
        self._checked_at = self.clock()
        if announce and before and verified and before.release_id != verified.release_id:
            try:
                self.moved(before, verified)
            except Exception:  # noqa: BLE001 - the release is served; the purge is best effort here
                log.exception("could not announce the release this process now serves")
        return verified

    def _fail(self, problem: str) -> ServedRelease | None:
        self.problem = problem
        if self.served is not None and not self._files_unchanged(self.served):
            # The last verified release's own files changed: nothing verified is left to serve.
            self.served = None
        if problem not in self._reported:
            self._reported.add(problem)
            try:
                self.report(problem)
            except Exception:  # noqa: BLE001 - reporting must never stop the refusal itself
                log.exception("could not report a release problem")
        return self.served

    def _files_unchanged(self, served: ServedRelease) -> bool:
        """Each served blob is still the very object that was verified (a stat, no read)."""
        for entry in served.manifest.datasets:
            if entry.sha256 is None or self._blob_signature(entry) != self._files.get(entry.sha256):
                return False
        return True

    def _blob_signature(self, entry: DatasetEntry) -> tuple[int, float | None] | None:
        try:
            info = self.versions.blobs.stat(content_key(entry.sha256 or ""))
        except BlobStoreError:
            return None
        return (info.size, info.modified)

    def _check_version(self, entry: DatasetEntry) -> None:
        """Fetch (or find) the verified local copy and re-read its rows once per blob object."""
        if entry.sha256 is None:
            raise Refused(
                "version-missing", f"{entry.name}: the release names no version file (no sha256)"
            )
        signature = self._blob_signature(entry)
        if signature is None:
            raise Refused(
                "version-missing",
                f"{entry.name}: version file {entry.digest[:12]} is missing from the blob store",
            )
        if self._files.get(entry.sha256) == signature:
            return
        cache = self.versions.cache
        if cache is None:
            raise Refused("version-unreadable", "this API has no blob cache to read versions from")
        cache.forget(entry.sha256)  # the store's object changed: never trust the old copy
        try:
            path = cache.path(entry.sha256)
        except BlobNotFound:
            raise Refused(
                "version-missing",
                f"{entry.name}: version file {entry.digest[:12]} is missing from the blob store",
            ) from None
        except DigestMismatch:
            raise Refused(
                "version-altered",
                f"{entry.name}: version file {entry.digest[:12]} does not match its digest "
                "(its bytes were changed in the blob store)",
            ) from None
        except BlobStoreError as exc:
            raise Refused("version-unreadable", f"{entry.name}: {exc}") from None
        verify_version_file(path, entry)
        self._files[entry.sha256] = signature

    def _verify(
        self, head: tuple, cutovers: list, consumed: dict[str, str], audited: set[str]
    ) -> ServedRelease | None:
        release_id, seq, latest, _ = head
        if release_id is None:
            if latest is not None:
                raise Refused("pointer-missing", "the release pointer was removed by hand")
            return None
        prev = GENESIS
        for entry in cutovers:
            if (
                entry.prev_hash != prev
                or cutover_hash(
                    prev, entry.seq, entry.at, entry.grant.to_json(), entry.manifest_bytes
                )
                != entry.hash
            ):
                raise Refused("cutover-log-altered", f"cutover log entry {entry.seq} was altered")
            prev = entry.hash
        if not cutovers or cutovers[-1].seq != seq:
            raise Refused(
                "pointer-not-latest-cutover",
                f"the release pointer names cutover {seq}, not the latest cutover of the pipeline",
            )
        entry = cutovers[-1]
        if entry.release_id != release_id or entry.grant.release_id != release_id:
            raise Refused(
                "pointer-altered",
                f"the release pointer names {release_id[:12]}, which no cutover grant allowed",
            )
        if sum(1 for c in cutovers if c.grant.grant_id == entry.grant.grant_id) != 1:
            raise Refused("grant-replayed", "the latest cutover re-uses an earlier grant")
        if consumed.get(entry.grant.grant_id) != release_id:
            raise Refused("grant-not-consumed", "the latest cutover's grant was never consumed")
        if grant_digest(entry.grant) not in audited:
            raise Refused(
                "no-audit-entry", "the latest cutover has no matching entry in the audit log"
            )
        pipeline = self.keys.public_key(PIPELINE_IDENTITY)
        if pipeline is None:
            raise Refused("no-pipeline-key", "the project's pipeline identity is not registered")
        verify_grant(
            entry.grant,
            pipeline,
            project=self.project,
            environment=self.env,
            release_id=release_id,
            now=entry.at,
        )
        manifest = Manifest.from_json(orjson.loads(entry.manifest_bytes), release_id)
        for dataset in manifest.datasets:
            self._check_version(dataset)
        return ServedRelease(
            release_id, manifest, seq, entry.grant.grant_id, entry.grant.deploy_id, entry.at
        )

    def trust_files(self, manifest: Manifest) -> None:
        """Verify every version file now (at cutover), so the first reads need only a stat."""
        for dataset in manifest.datasets:
            self._check_version(dataset)


def _info(entry, at: float) -> VersionInfo:
    return VersionInfo(
        dataset=entry.name,
        digest=entry.digest,
        row_count=entry.row_count,
        schema=tuple(Column(n, t) for n, t in entry.schema),
        checksum=entry.checksum,
        created_at=at,
        sha256=entry.sha256,
    )


class ReleaseView:
    """The metadata store as production's readers see it: only the verified release's versions."""

    def __init__(self, inner, guard: ReleaseGuard, unavailable: Callable[[str], Exception]):
        self._inner = inner
        self.guard = guard
        self._unavailable = unavailable

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def _served(self) -> ServedRelease | None:
        served = self.guard.current()
        if served is None and self.guard.problem:
            raise self._unavailable(self.guard.problem)
        return served

    def current(self, dataset: str) -> VersionInfo | None:
        served = self._served()
        entry = served.manifest.dataset(dataset) if served else None
        return _info(entry, served.switched_at) if entry and served else None

    def version(self, dataset: str, digest: str) -> VersionInfo | None:
        current = self.current(dataset)
        return current if current and current.digest == digest else None

    def versions(self, dataset: str) -> list[VersionInfo]:
        current = self.current(dataset)
        return [current] if current else []

    def datasets(self) -> Iterator[DatasetInfo]:
        served = self._served()
        if served is None:
            return
        for entry in served.manifest.datasets:
            yield DatasetInfo(name=entry.name, current=_info(entry, served.switched_at), versions=1)
