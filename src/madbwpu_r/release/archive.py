"""A deploy's audit archive: the project log's segment of that deploy, exported by `audit/`.

The pipeline's last step exports the entries on `deploy:ID` with a signed checkpoint (the audit
service's key) to `DIR/audit/archives/project/deploy-ID`; compliance signs it off with `audit
signoff` like any archive. The guardrail asks only `verified_signoff(deploy_id)`: the archive
named by the deploy's record still verifies offline and carries a compliance signoff.
"""

from __future__ import annotations

from pathlib import Path

from madbwpu_r.audit.archive import (
    Archive,
    ArchiveError,
    export_archive,
    load_archive,
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
    "archive_path",
    "export_deploy",
    "sign_off_deploy",
    "verified_signoff",
]

COMPLIANCE_ROLE = "compliance"


def archive_path(data_dir: Path, deploy_id: str) -> Path:
    return Path(data_dir) / "audit" / "archives" / "project" / f"deploy-{deploy_id}"


def export_deploy(data_dir: Path, keys: LocalKeyring, deploy_id: str) -> Archive:
    """Export the deploy's segment once; after a crash the archive already written is it."""
    out = archive_path(data_dir, deploy_id)
    if out.exists():
        try:
            return load_archive(out)
        except ArchiveError:
            raise Refused(
                "archive-damaged", f"{out} exists but is not a whole archive: {out} must be "
                "inspected by hand (archives are written once)",
            ) from None  # fmt: skip
    try:
        key = load_signing_key(data_dir, AUDIT_KEY, env={})
    except KeyringError as exc:
        raise Refused("no-audit-key", f"the audit service key is not usable: {exc}") from None
    log = open_log(data_dir, "project")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return export_archive(
            log, "project", key, keys.directory.acts(), out, actor="pipeline", deploy=deploy_id
        )
    except ArchiveError as exc:
        raise Refused(
            "archive-failed", f"the deploy's archive could not be written: {exc}"
        ) from None
    finally:
        log.close()


def sign_off_deploy(
    data_dir: Path, store: ProjectStore, keys: LocalKeyring, deploy_id: str, actor: str
) -> None:
    """What `audit signoff ARCHIVE --as NAME` does, for a deploy's archive (demo, bench)."""
    record = store.archive(deploy_id)
    if record is None:
        raise Refused("no-archive", f"deploy {deploy_id} has no archive (yet)")
    if COMPLIANCE_ROLE not in keys.roles(actor):
        raise Refused("not-compliance", f"{actor!r} does not hold the compliance role")
    archive = load_archive(Path(record.location))
    report = verify_archive(archive, _trusted(keys))
    if not report.ok:
        raise Refused("archive-invalid", f"the archive does not verify: {report.problems[0]}")
    log = open_log(Path(data_dir), "project")
    try:
        sign_off(archive, keys.signing_key(actor), keys.directory.acts(), log)
    finally:
        log.close()


def verified_signoff(store: ProjectStore, keys: LocalKeyring, deploy_id: str) -> bool:
    """True only while the deploy's archive verifies and a compliance identity signed it off."""
    record = store.archive(deploy_id)
    if record is None:
        return False
    try:
        archive = load_archive(Path(record.location))
    except (ArchiveError, OSError):
        return False
    if archive.digest != record.digest:
        return False
    report = verify_archive(archive, _trusted(keys))
    return report.ok and bool(report.signoffs)


def _trusted(keys: LocalKeyring) -> dict[str, str]:
    return {m.name: m.fingerprint for m in keys.directory.list()}
