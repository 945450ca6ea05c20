"""Signed identity acts: registering an identity, granting and revoking roles.

An act is a small canonical-JSON document signed by the admin who makes it (purpose
`identity-act`). The directory keeps every act, so that anyone can replay them from the first,
self-signed one and recompute who holds which key and role: an archive carries them, and its
verifier does exactly that instead of trusting a table of keys.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from madbwpu_r.audit.records import format_time
from madbwpu_r.identity.roles import check_roles
from madbwpu_r.signing import (
    SignatureError,
    SigningKey,
    canonical_json,
    public_key_from_b64,
    public_key_to_b64,
    sign,
    verify,
)

__all__ = [
    "ACT_PURPOSE",
    "ActError",
    "KINDS",
    "SignedAct",
    "make_act",
    "replay",
]

ACT_PURPOSE = "identity-act"
KINDS = ("identity.init", "identity.add", "identity.grant", "identity.revoke")


class ActError(Exception):
    """An act that is malformed, badly signed, or not allowed to its signer."""


@dataclass(frozen=True)
class SignedAct:
    body: dict[str, Any]
    signature: str

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def by(self) -> str:
        return self.body["by"]

    @property
    def name(self) -> str:
        return self.body["name"]

    @property
    def roles(self) -> list[str]:
        return list(self.body.get("roles") or [])

    def payload(self) -> bytes:
        return canonical_json(self.body)

    def to_json(self) -> dict[str, Any]:
        return {"act": self.body, "signature": self.signature}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedAct:
        try:
            body, signature = data["act"], data["signature"]
            if body["kind"] not in KINDS or not isinstance(signature, str):
                raise ActError(f"unknown act kind {body['kind']!r}")
            body["by"], body["name"], body["time"], body["nonce"]  # noqa: B018 - presence
        except (KeyError, TypeError):
            raise ActError(
                "an identity act needs act.{kind,by,name,time,nonce} and a signature"
            ) from None
        return cls(dict(body), signature)


def make_act(
    key: SigningKey,
    kind: str,
    name: str,
    roles: list[str] | None = None,
    public_key: str | None = None,
    now: float | None = None,
) -> SignedAct:
    """An act made and signed by `key`'s identity (for `identity.init`, about itself)."""
    if kind not in KINDS:
        raise ActError(f"unknown act kind {kind!r}")
    body: dict[str, Any] = {
        "kind": kind,
        "by": key.name,
        "name": name,
        "roles": sorted(check_roles(roles or [])),
        "time": format_time(time.time() if now is None else now),
        "nonce": secrets.token_hex(16),
    }
    if public_key is not None:
        body["public_key"] = public_key
    if kind == "identity.init":
        body["public_key"] = public_key_to_b64(key.public)
    return SignedAct(body, sign(key, ACT_PURPOSE, canonical_json(body)))


@dataclass
class Member:
    name: str
    public_key: str
    roles: set[str]
    revoked: bool = False


def check_act(members: dict[str, Member], act: SignedAct) -> None:
    """Raise ActError unless `act` may be applied to the directory `members` describes."""
    if act.kind == "identity.init":
        if members:
            raise ActError("identity.init is only the first act of a directory")
        if act.by != act.name or "admin" not in act.roles:
            raise ActError("identity.init registers its own signer as an admin")
        signer_key = act.body.get("public_key", "")
    else:
        signer = members.get(act.by)
        if signer is None or signer.revoked:
            raise ActError(f"{act.by} is not a registered, unrevoked identity")
        if "admin" not in signer.roles:
            raise ActError(f"{act.by} does not hold the admin role")
        signer_key = signer.public_key
    try:
        verify(public_key_from_b64(signer_key), ACT_PURPOSE, act.payload(), act.signature)
    except SignatureError:
        raise ActError(f"the {act.kind} act's signature by {act.by} does not verify") from None
    target = members.get(act.name)
    if act.kind == "identity.add":
        if target is not None:
            raise ActError(f"{act.name} is already registered")
        try:
            public_key_from_b64(act.body.get("public_key", ""))
        except SignatureError:
            raise ActError("identity.add needs the identity's Ed25519 public key") from None
    elif act.kind in ("identity.grant", "identity.revoke") and (target is None or target.revoked):
        raise ActError(f"{act.name} is not a registered, unrevoked identity")
    if act.kind == "identity.revoke":
        after = set() if not act.roles else (target.roles - set(act.roles))  # type: ignore[union-attr]
        admins = [m for m in members.values() if "admin" in m.roles and not m.revoked]
        if "admin" not in after and admins == [target]:
            raise ActError("refusing to revoke the last admin")


def apply_act(members: dict[str, Member], act: SignedAct) -> None:
    if act.kind in ("identity.init", "identity.add"):
        members[act.name] = Member(act.name, act.body["public_key"], set(act.roles))
    elif act.kind == "identity.grant":
        members[act.name].roles |= set(act.roles)
    elif act.roles:
        members[act.name].roles -= set(act.roles)
    else:
        members[act.name].revoked = True


def replay(acts: list[SignedAct]) -> dict[str, Member]:
    """Recompute the directory from its acts; ActError names the first act that is wrong."""
    members: dict[str, Member] = {}
    for number, act in enumerate(acts):
        try:
            check_act(members, act)
        except ActError as exc:
            raise ActError(f"identity act {number}: {exc}") from None
        apply_act(members, act)
    return members
