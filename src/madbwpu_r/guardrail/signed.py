"""A policy as stored and trusted: the document, who signed it and when, and its revocation.

Both the policy and a revocation verify with a `security` identity's public key alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from madbwpu_r.guardrail.policy import Policy
from madbwpu_r.release.errors import Refused
from madbwpu_r.signing import (
    KeyDirectory,
    SignatureError,
    SigningKey,
    canonical_json,
    digest,
    sign,
    verify,
)

__all__ = ["SignedPolicy", "Revocation", "sign_policy", "revoke", "SECURITY_ROLE"]

SECURITY_ROLE = "security"
POLICY_PURPOSE = "guardrail-policy"
REVOCATION_PURPOSE = "guardrail-revocation"


def _check_signer(keys: KeyDirectory, name: str, what: str):
    public = keys.public_key(name)
    if public is None:
        raise Refused(f"{what}-unknown-signer", f"the {what} signer {name!r} is not registered")
    if SECURITY_ROLE not in keys.roles(name):
        raise Refused(
            f"{what}-signer-not-security", f"the {what} signer {name!r} does not hold security"
        )
    return public


@dataclass(frozen=True)
class SignedPolicy:
    policy: dict[str, Any]
    signer: str
    signed_at: float
    signature: str

    def payload(self) -> bytes:
        return canonical_json(
            {"policy": self.policy, "signer": self.signer, "signed_at": self.signed_at}
        )

    @property
    def digest(self) -> str:
        return digest(canonical_json(self.policy))

    @property
    def token(self) -> str:
        return str(self.policy.get("token", ""))

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "signer": self.signer,
            "signed_at": self.signed_at,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedPolicy:
        try:
            return cls(
                dict(data["policy"]),
                str(data["signer"]),
                float(data["signed_at"]),
                str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused("policy-malformed", f"the stored policy is malformed: {exc!r}") from None

    def verified(self, keys: KeyDirectory) -> Policy:
        """The policy, once its signature by a security identity checks out; else a refusal."""
        public = _check_signer(keys, self.signer, "policy")
        try:
            verify(public, POLICY_PURPOSE, self.payload(), self.signature)
        except SignatureError:
            raise Refused(
                "policy-tampered",
                f"the policy {self.token!r} does not match its signature by {self.signer!r}",
            ) from None
        return Policy.from_json(self.policy)


def sign_policy(key: SigningKey, policy: Policy, now: float) -> SignedPolicy:
    unsigned = SignedPolicy(policy.to_json(), key.name, now, "")
    return SignedPolicy(
        unsigned.policy, key.name, now, sign(key, POLICY_PURPOSE, unsigned.payload())
    )


@dataclass(frozen=True)
class Revocation:
    token: str
    policy_digest: str
    revoked_by: str
    at: float
    reason: str
    signature: str

    def payload(self) -> bytes:
        return canonical_json(
            {
                "token": self.token,
                "policy_digest": self.policy_digest,
                "revoked_by": self.revoked_by,
                "at": self.at,
                "reason": self.reason,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {**orjson.loads(self.payload()), "signature": self.signature}

    @classmethod
    def from_json(cls, data: Any) -> Revocation:
        try:
            return cls(
                str(data["token"]),
                str(data["policy_digest"]),
                str(data["revoked_by"]),
                float(data["at"]),
                str(data.get("reason") or ""),
                str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused("revocation-malformed", f"a revocation is malformed: {exc!r}") from None

    def verify(self, keys: KeyDirectory) -> None:
        public = _check_signer(keys, self.revoked_by, "revocation")
        try:
            verify(public, REVOCATION_PURPOSE, self.payload(), self.signature)
        except SignatureError:
            raise Refused(
                "revocation-tampered", f"the revocation of {self.token!r} does not verify"
            ) from None


def revoke(key: SigningKey, signed: SignedPolicy, now: float, reason: str = "") -> Revocation:
    unsigned = Revocation(signed.token, signed.digest, key.name, now, reason, "")
    return Revocation(
        signed.token,
        signed.digest,
        key.name,
        now,
        reason,
        sign(key, REVOCATION_PURPOSE, unsigned.payload()),
    )
