"""How release events become entries of the audit log (`audit/`), in the same transaction.

The release store keeps each event's full evidence; the audit entry carries its digest (evidence
is digests only), a target naming what it is about, and a one-line detail.
"""

from __future__ import annotations

import re
from typing import Any

from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.signing import canonical_json, digest

__all__ = ["RELEASE_ACTIONS", "audit_record"]

from madbwpu_r.release.audit_actions import RELEASE_ACTIONS  # noqa: F401 - re-exported

_RENAMES = {
    "deploy.grant.minted": "deploy.grant",
    "cutover.deploy": "release.cutover",
    "cutover.rollback": "release.cutover",
    "cutover.refused": "release.cutover_refused",
    "ingest.refused": "release.ingest_refused",
    "guardrail.create": "guardrail.created",
    "guardrail.revoke": "guardrail.revoked",
    "deploy.resume": "deploy.resumed",
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _target(target: str) -> str:
    if target.startswith("dep-"):
        return f"deploy:{target}"
    if _HEX64.fullmatch(target):
        return f"release:{target}"
    if target in ("staging", "production"):
        return f"env:{target}"
    return f"guardrail:{target}"


def audit_record(
    actor: str, action: str, target: str, outcome: str, evidence: dict[str, Any]
) -> AuditRecord:
    detail = ""
    if action.startswith("deploy.step."):
        detail = action.removeprefix("deploy.step.")
        action = "deploy.step"
    action = _RENAMES.get(action, action)
    proofs = {"evidence": digest(canonical_json(evidence))}
    release = evidence.get("release_id")
    if isinstance(release, str) and _HEX64.fullmatch(release):
        proofs["release"] = release
    reason = evidence.get("reason") or evidence.get("refusal") or evidence.get("problem") or ""
    detail = " ".join(p for p in (detail, str(reason)) if p)[:1024]
    return AuditRecord(
        actor=actor[:128] or "-",
        action=action,
        target=_target(target)[:512],
        outcome={"waiting": "ok", "interrupted": "failed"}.get(outcome, outcome),
        evidence=proofs,
        detail=detail,
    )
