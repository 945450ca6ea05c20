"""The audit actions the release pipeline records (merged into `audit/records.py` ACTIONS)."""

from __future__ import annotations

__all__ = ["RELEASE_ACTIONS"]

# Added to audit/records.py ACTIONS (the catalogue) and documented in the README.
RELEASE_ACTIONS: dict[str, str] = {
    "release.cut": "a release was cut from staging (or cutting one was refused)",
    "qa.signoff": "a QA signoff of a release was recorded (or refused)",
    "qa.rejection": "a QA rejection of a release was recorded (or refused)",
    "qa.refused": "a signed QA decision sent over HTTP was refused",
    "guardrail.created": "a guardrail policy was signed and stored (or refused)",
    "guardrail.revoked": "a guardrail policy was revoked by a signed revocation (or refused)",
    "guardrail.validated": "every rule of a guardrail was evaluated for a release",
    "deploy.requested": "a deploy of a release to production was requested (or refused)",
    "rollback.requested": "a rollback of production to an earlier release was requested",
    "deploy.resumed": "a deploy was resumed from its last completed step (or refused)",
    "deploy.step": "a pipeline step passed, failed or is waiting (detail names it)",
    "deploy.grant": "the pipeline minted a single-use cutover grant (its id recorded first)",
    "deploy.succeeded": "every pipeline step passed",
    "release.cutover": "production moved its release pointer with a grant (same transaction)",
    "release.cutover_refused": "a cutover request was refused (no, forged, replayed, other grant)",
    "release.ingest_refused": "a direct ingest into production was refused",
    "release.tamper_detected": "production found its pointer or a version file changed by hand",
}
