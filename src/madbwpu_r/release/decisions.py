"""QA signoffs and rejections: signed statements bound to one release id, one time, one signer.

A decision is a document, not a row: it verifies with the signer's public key alone, so the
pipeline (and anyone auditing it later) can check it without trusting the store that kept it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from madbwpu_r.release.errors import Refused
from madbwpu_r.signing import KeyDirectory, SignatureError, SigningKey, canonical_json, sign, verify

__all__ = ["QaDecision", "make_decision", "verify_decision", "QA_ROLE", "MAX_NOTE"]

QA_ROLE = "qa"
MAX_NOTE = 2000
Kind = Literal["signoff", "rejection"]
_PURPOSE = {"signoff": "qa-signoff", "rejection": "qa-rejection"}


@dataclass(frozen=True)
class QaDecision:
    kind: Kind
    release_id: str
    signer: str
    at: float
    note: str
    signature: str

    def payload(self) -> bytes:
        return canonical_json(
            {
                "kind": self.kind,
                "release_id": self.release_id,
                "signer": self.signer,
                "at": self.at,
                "note": self.note,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "release_id": self.release_id,
            "signer": self.signer,
            "at": self.at,
            "note": self.note,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QaDecision:
        try:
            kind = data["kind"]
            if kind not in _PURPOSE:
                raise ValueError(f"kind {kind!r}")
            return cls(
                kind=kind,
                release_id=str(data["release_id"]),
                signer=str(data["signer"]),
                at=float(data["at"]),
                note=str(data.get("note") or ""),
                signature=str(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused("decision-malformed", f"the QA decision is malformed: {exc}") from None


def make_decision(
    key: SigningKey, kind: Kind, release_id: str, at: float, note: str = ""
) -> QaDecision:
    if len(note) > MAX_NOTE:
        raise Refused("note-too-long", f"a QA note is at most {MAX_NOTE} characters")
    unsigned = QaDecision(kind, release_id, key.name, at, note, "")
    return QaDecision(
        kind, release_id, key.name, at, note, sign(key, _PURPOSE[kind], unsigned.payload())
    )


def verify_decision(decision: QaDecision, keys: KeyDirectory) -> None:
    """Refuse unless a registered identity holding `qa` signed exactly this decision."""
    public = keys.public_key(decision.signer)
    if public is None:
        raise Refused("unknown-identity", f"{decision.signer!r} is not a registered identity")
    if QA_ROLE not in keys.roles(decision.signer):
        raise Refused(
            "not-qa", f"{decision.signer!r} does not hold the qa role; only qa identities sign off"
        )
    try:
        verify(public, _PURPOSE[decision.kind], decision.payload(), decision.signature)
    except SignatureError:
        raise Refused(
            "bad-signature", f"the QA {decision.kind} by {decision.signer!r} does not verify"
        ) from None
