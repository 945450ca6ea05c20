"""Compliance signoff of a deploy's archive: a `compliance` identity signs the archive digest.

Interim home until the audit package's `audit signoff` takes it over; the guardrail asks only
`verified_signoff(deploy_id)`.
"""

from __future__ import annotations

import time

from madbwpu_r.release.errors import Refused
from madbwpu_r.release.keyring import LocalKeyring
from madbwpu_r.release.store import ProjectStore
from madbwpu_r.signing import SignatureError, sign, verify

__all__ = ["sign_off", "verified_signoff", "COMPLIANCE_ROLE"]

COMPLIANCE_ROLE = "compliance"
PURPOSE = "archive-signoff"


def _payload(deploy_id: str, archive_digest: str, at: float) -> bytes:
    return f"{deploy_id}\n{archive_digest}\n{at!r}".encode()


def sign_off(store: ProjectStore, keys: LocalKeyring, deploy_id: str, actor: str) -> float:
    record = store.archive(deploy_id)
    if record is None:
        raise Refused("no-archive", f"deploy {deploy_id} has no archive (yet)")
    if COMPLIANCE_ROLE not in keys.roles(actor):
        raise Refused("not-compliance", f"{actor!r} does not hold the compliance role")
    key = keys.signing_key(actor)
    at = time.time()
    store.sign_off_archive(
        deploy_id, actor, at, sign(key, PURPOSE, _payload(deploy_id, record.digest, at))
    )
    return at


def verified_signoff(store: ProjectStore, keys: LocalKeyring, deploy_id: str) -> bool:
    """True only for a signoff by a current compliance identity over this archive's digest."""
    record = store.archive(deploy_id)
    if record is None or not record.signed_off_by or record.signature is None:
        return False
    public = keys.public_key(record.signed_off_by)
    if public is None or COMPLIANCE_ROLE not in keys.roles(record.signed_off_by):
        return False
    try:
        verify(
            public,
            PURPOSE,
            _payload(deploy_id, record.digest, record.signed_off_at or 0.0),
            record.signature,
        )
    except SignatureError:
        return False
    return True
