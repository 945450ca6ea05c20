"""The cutover grant: the only thing production accepts to move its release pointer.

The pipeline mints one after steps 1-5 passed. It is signed by the pipeline's key, bound to
(project, release id, environment, deploy id), valid for a short time, and its random id is
consumed by production in the same transaction that moves the pointer, so it works once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from madbwpu_r.release.errors import Refused
from madbwpu_r.signing import SignatureError, SigningKey, canonical_json, sign, verify

__all__ = ["CutoverGrant", "mint_grant", "verify_grant", "GRANT_TTL", "PIPELINE_IDENTITY"]

PURPOSE = "cutover-grant"
GRANT_TTL = 120.0  # seconds: long enough for one cutover request, short enough to be useless later
PIPELINE_IDENTITY = "pipeline"


@dataclass(frozen=True)
class CutoverGrant:
    grant_id: str
    project: str
    release_id: str
    environment: str
    deploy_id: str
    action: str  # "deploy" or "rollback"
    issued_at: float
    expires_at: float
    issuer: str
    signature: str

    def payload(self) -> bytes:
        body = self.to_json()
        body.pop("signature")
        return canonical_json(body)

    def to_json(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "project": self.project,
            "release_id": self.release_id,
            "environment": self.environment,
            "deploy_id": self.deploy_id,
            "action": self.action,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "issuer": self.issuer,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> CutoverGrant:
        try:
            return cls(
                grant_id=str(data["grant_id"]),
                project=str(data["project"]),
                release_id=str(data["release_id"]),
                environment=str(data["environment"]),
                deploy_id=str(data["deploy_id"]),
                action=str(data["action"]),
                issued_at=float(data["issued_at"]),
                expires_at=float(data["expires_at"]),
                issuer=str(data["issuer"]),
                signature=str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused("grant-malformed", f"the cutover grant is malformed: {exc!r}") from None


def mint_grant(
    key: SigningKey,
    *,
    project: str,
    release_id: str,
    environment: str,
    deploy_id: str,
    action: str,
    now: float,
    ttl: float = GRANT_TTL,
) -> CutoverGrant:
    unsigned = CutoverGrant(
        grant_id=secrets.token_hex(16),
        project=project,
        release_id=release_id,
        environment=environment,
        deploy_id=deploy_id,
        action=action,
        issued_at=now,
        expires_at=now + ttl,
        issuer=key.name,
        signature="",
    )
    signature = sign(key, PURPOSE, unsigned.payload())
    return CutoverGrant(**{**unsigned.to_json(), "signature": signature})


def verify_grant(
    grant: CutoverGrant,
    pipeline_key: Ed25519PublicKey,
    *,
    project: str,
    environment: str,
    release_id: str,
    now: float,
) -> None:
    """Signature, binding and lifetime. Single use is enforced by the store that consumes the id."""
    try:
        verify(pipeline_key, PURPOSE, grant.payload(), grant.signature)
    except SignatureError:
        raise Refused(
            "grant-forged", "the cutover grant is not signed by this project's pipeline"
        ) from None
    if grant.project != project:
        raise Refused("grant-other-project", f"the grant is for project {grant.project!r}")
    if grant.environment != environment:
        raise Refused(
            "grant-other-environment",
            f"the grant is for environment {grant.environment!r}, not {environment!r}",
        )
    if grant.release_id != release_id:
        raise Refused(
            "grant-other-release",
            f"the grant is for release {grant.release_id[:12]}, not {release_id[:12]}",
        )
    if grant.action not in ("deploy", "rollback"):
        raise Refused("grant-malformed", f"the grant's action {grant.action!r} is unknown")
    if now < grant.issued_at - 5:
        raise Refused("grant-not-yet-valid", "the cutover grant is not valid yet")
    if now >= grant.expires_at:
        raise Refused(
            "grant-expired", "the cutover grant has expired; the pipeline mints a new one"
        )
