"""What an audit entry says, and the catalogue of every action the product records.

An entry holds facts and digests, never a secret: evidence is a map of names to SHA-256 hex
digests (of a file, a manifest, a signed document), so an archive can be handed to anyone.
Every action must be in `ACTIONS` (documented in the README, checked by a test); appending an
unknown one is refused, so the catalogue stays the whole truth. Add new actions here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from madbwpu_r.signing import canonical_json, digest

__all__ = [
    "ACTIONS",
    "GENESIS",
    "OUTCOMES",
    "AuditRecord",
    "Entry",
    "InvalidRecord",
    "format_time",
]

ACTIONS: dict[str, str] = {
    "identity.init": "`madbwpu-r init` created the admin identity and the audit service key",
    "identity.add": "an identity was registered with its public key and roles",
    "identity.grant": "a role was granted to an identity (signed by an admin)",
    "identity.revoke": "a role, or a whole identity, was revoked (signed by an admin)",
    "identity.refused": "an act was refused: unknown identity, missing role, bad signature",
    "audit.archive": "a segment of the log was exported as an archive",
    "audit.signoff": "a compliance identity co-signed an archive's checkpoint",
    "audit.read": "the log was read through the API",
    "ingest.accepted": "an upload was accepted for ingest and its job enqueued",
    "version.published": "a dataset version was published (the dataset's current pointer moved)",
    "job.retry": "a dead job was put back on its queue",
    "data.purge": "data was purged from an environment",
}
# The release pipeline's actions (release/audit.py keeps their mapping from its events).
from madbwpu_r.release.audit_actions import RELEASE_ACTIONS  # noqa: E402

ACTIONS.update(RELEASE_ACTIONS)

OUTCOMES = ("ok", "refused", "failed")
GENESIS = "0" * 64  # the `prev` of a log's first entry

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class InvalidRecord(ValueError):
    """A record that must not enter the log (unknown action, evidence that is not digests...)."""


def format_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditRecord:
    """What a caller asks to record; the log adds the time, position and chain."""

    actor: str
    action: str
    target: str
    outcome: str = "ok"
    evidence: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    def check(self) -> None:
        if self.action not in ACTIONS:
            raise InvalidRecord(f"{self.action!r} is not an audit action (audit/records.py)")
        if self.outcome not in OUTCOMES:
            raise InvalidRecord(f"outcome must be one of {', '.join(OUTCOMES)}")
        if not self.actor or len(self.actor) > 128 or "\n" in self.actor:
            raise InvalidRecord("the actor is one line of at most 128 characters")
        if len(self.target) > 512 or len(self.detail) > 1024:
            raise InvalidRecord("target (512) or detail (1024 characters) is too long")
        for name, value in self.evidence.items():
            if not _NAME.match(name) or not isinstance(value, str) or not _DIGEST.match(value):
                raise InvalidRecord(
                    f"evidence {name!r} must be a lowercase name and a SHA-256 hex digest"
                )


@dataclass(frozen=True)
class Entry:
    """A record at its place in the log: the Merkle leaf is exactly `leaf()`."""

    seq: int
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    detail: str
    evidence: dict[str, str]
    prev: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
            "evidence": self.evidence,
            "prev": self.prev,
        }

    def leaf(self) -> bytes:
        return canonical_json(self.to_json())

    def hash(self) -> str:
        return digest(self.leaf())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        try:
            entry = cls(
                seq=data["seq"],
                time=data["time"],
                actor=data["actor"],
                action=data["action"],
                target=data["target"],
                outcome=data["outcome"],
                detail=data["detail"],
                evidence=dict(data["evidence"]),
                prev=data["prev"],
            )
        except (KeyError, TypeError) as exc:
            raise InvalidRecord(f"an entry lacks a field: {exc}") from None
        if set(data) != set(entry.to_json()):
            raise InvalidRecord(
                f"an entry has unknown fields: {sorted(set(data) - set(entry.to_json()))}"
            )
        return entry
