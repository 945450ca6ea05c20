"""A deploy's audit archive: the project log's segment of that deploy, exported by `audit/`.

The pipeline's last step exports the entries on `deploy:ID` with a signed checkpoint (the audit
service's key) into the blob store of the deploy's target environment, at the archive URL
`BLOB_URL/audit/archives/project/deploy-ID` (`file://DIR/production/blobs/...` on embedded
defaults, `s3://...` scaled out), so it survives where processes share no disk; compliance
signs it off with `audit signoff URL` like any archive. The guardrail asks only
`verified_signoff(deploy_id)`: the archive named by the deploy's record still verifies
offline and carries a compliance signoff.
"""

from __future__ import annotations

from pathlib import Path

from madbwpu_r.audit.archive import (
    Archive,
    ArchiveError,
    ArchiveExists,
    archive_exists,
    archive_url,
    export_archive,
    load_archive,
    record_archive,
    sign_off,
    verify_archive,
)
from madbwpu_r.audit.layout import AUDIT_KEY, open_log
from madbwpu_r.identity.keyring import KeyringError, load_signing_key
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.keyring import LocalKeyring
from madbwpu_r.release.store import ProjectStore

__all__ = [
    "COMPLIANCE_ROLE",
    "deploy_archive_url",
    "export_deploy",
    "sign_off_deploy",
    "verified_signoff",
]

COMPLIANCE_ROLE = "compliance"
ACTOR = "pipeline"


def deploy_archive_url(blob_url: str, deploy_id: str) -> str:
    """Where a deploy's archive lives in its target environment's blob store."""
    return archive_url(blob_url, "project", f"deploy-{deploy_id}")


def export_deploy(data_dir: Path, keys: LocalKeyring, deploy_id: str, blob_url: str) -> Archive:
    """Export the deploy's segment once into `blob_url`; after a crash (or when a concurrent run
    of the step won the create-only write) the archive already there is it, if it is whole."""
    where = deploy_archive_url(blob_url, deploy_id)
    try:
        if archive_exists(where):
            return _resumed(data_dir, keys, deploy_id, where)
    except ArchiveError as exc:
        raise Refused("archive-failed", f"the deploy's archive cannot be read: {exc}") from None
    try:
        key = load_signing_key(data_dir, AUDIT_KEY, env={})
    except KeyringError as exc:
        raise Refused("no-audit-key", f"the audit service key is not usable: {exc}") from None
    log = open_log(data_dir, "project")
    try:
        return export_archive(
            log, "project", key, keys.directory.acts(), where, actor=ACTOR, deploy=deploy_id
        )
    except ArchiveExists:
        pass  # written meanwhile by another run of this step: judged below like a resumed one
    except ArchiveError as exc:
        raise Refused(
            "archive-failed", f"the deploy's archive could not be written: {exc}"
        ) from None
    finally:
        log.close()
    return _resumed(data_dir, keys, deploy_id, where)


def _resumed(data_dir: Path, keys: LocalKeyring, deploy_id: str, where: str) -> Archive:
    """The archive found at `where`, only if it is this deploy's whole, verifying archive; its
    `audit.archive` entry is appended if the writer died before appending it."""
    try:
        archive = load_archive(where)
    except ArchiveError as exc:
        raise _damaged(where, str(exc)) from None
    doc = archive.doc
    if doc.get("log") != "project" or (doc.get("selection") or {}).get("deploy") != deploy_id:
        raise _damaged(where, f"it is not the project log's archive of deploy {deploy_id}")
    report = verify_archive(archive, _trusted(keys))
    if not report.ok:
        raise _damaged(where, f"it does not verify: {report.problems[0]}")
    log = open_log(data_dir, "project")
    try:
        record_archive(log, archive, ACTOR)
    finally:
        log.close()
    return archive


def _damaged(where: str, why: str) -> Refused:
    return Refused(
        "archive-damaged",
        f"{where} exists but is not a whole archive ({why}): it must be inspected by hand "
        "(archives are written once)",
    )


def sign_off_deploy(
    data_dir: Path, store: ProjectStore, keys: LocalKeyring, deploy_id: str, actor: str
) -> None:
    """What `audit signoff ARCHIVE --as NAME` does, for a deploy's archive (demo, bench)."""
    record = store.archive(deploy_id)
    if record is None:
        raise Refused("no-archive", f"deploy {deploy_id} has no archive (yet)")
    if COMPLIANCE_ROLE not in keys.roles(actor):
        raise Refused("not-compliance", f"{actor!r} does not hold the compliance role")
    try:
        archive = load_archive(record.location)
    except ArchiveError as exc:
        raise Refused("archive-unreadable", f"the deploy's archive: {exc}") from None
    report = verify_archive(archive, _trusted(keys))
    if not report.ok:
        raise Refused("archive-invalid", f"the archive does not verify: {report.problems[0]}")
    log = open_log(Path(data_dir), "project")
    try:
        sign_off(archive, keys.signing_key(actor), keys.directory.acts(), log)
    except ArchiveError as exc:
        raise Refused("archive-failed", f"the signoff could not be written: {exc}") from None
    finally:
        log.close()


def verified_signoff(store: ProjectStore, keys: LocalKeyring, deploy_id: str) -> bool:
    """True only while the deploy's archive verifies and a compliance identity signed it off."""
    record = store.archive(deploy_id)
    if record is None:
        return False
    try:
        archive = load_archive(record.location)
    except (ArchiveError, OSError):
        return False
    if archive.digest != record.digest:
        return False
    report = verify_archive(archive, _trusted(keys))
    return report.ok and bool(report.signoffs)


def _trusted(keys: LocalKeyring) -> dict[str, str]:
    return {m.name: m.fingerprint for m in keys.directory.list()}
