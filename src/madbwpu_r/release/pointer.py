"""Production's release pointer, kept in the environment's own store (`store.ledger`).

One transaction consumes the grant id, appends the cutover to the environment's chained
cutover log, adds the audit entry the API checks before serving, moves the pointer and queues
the edges' purge in the outbox. A
replayed grant hits the primary key of `consumed_grants` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.grant import CutoverGrant
from madbwpu_r.release.manifest import Manifest
from madbwpu_r.signing import canonical_json, digest
from madbwpu_r.store import MetadataStore, OutboxMessage
from madbwpu_r.store.ledger import GENESIS, CutoverRow

__all__ = ["GENESIS", "Cutover", "PointerStore", "cutover_hash"]


def cutover_hash(prev: str, seq: int, at: float, grant: dict[str, Any], manifest: bytes) -> str:
    return digest(
        prev.encode()
        + b"\n"
        + canonical_json({"seq": seq, "at": at, "grant": grant})
        + b"\n"
        + manifest
    )


def cutover_record(grant: CutoverGrant, manifest: Manifest, entry_hash: str) -> AuditRecord:
    """The environment log's entry for a cutover; the API checks it before serving the release."""
    return AuditRecord(
        actor=f"{grant.issuer}:{grant.deploy_id}"[:128],
        action="release.cutover",
        target=f"release:{manifest.release_id}",
        evidence={
            "grant": grant_digest(grant),
            "cutover": entry_hash,
            "release": manifest.release_id,
        },
        detail=f"{grant.action} {grant.deploy_id} grant {grant.grant_id}",
    )


def grant_digest(grant: CutoverGrant) -> str:
    return digest(canonical_json(grant.to_json()))


@dataclass(frozen=True)
class Cutover:
    seq: int
    at: float
    release_id: str
    grant: CutoverGrant
    manifest_bytes: bytes
    prev_hash: str
    hash: str

    @property
    def manifest(self) -> Manifest:
        return Manifest.from_json(orjson.loads(self.manifest_bytes))


class PointerStore:
    """Production's pointer, consumed grants and cutover log, in the environment's own store."""

    def __init__(self, store: MetadataStore, env: str):
        self.store = store
        self.env = env

    def switch(
        self, grant: CutoverGrant, manifest: Manifest, purge: Sequence[str] = ()
    ) -> tuple[Cutover, int | None]:
        """Consume the grant, chain the cutover, audit it, move the pointer and queue the purge
        of `purge` (surrogate keys) in the outbox: one transaction. The outbox row's seq too."""
        body = manifest.canonical()
        doc = grant.to_json()
        with self.store.unit_of_work() as uow:
            row = uow.switch_pointer(
                self.env, grant.grant_id, manifest.release_id, canonical_json(doc), body,
                lambda prev, seq, at: cutover_hash(prev, seq, at, doc, body),
            )  # fmt: skip
            if row is None:
                raise Refused(
                    "grant-replayed", f"the cutover grant {grant.grant_id} was already used"
                )
            uow.audit(cutover_record(grant, manifest, row.hash))
            outbox = uow.emit(OutboxMessage("purge", {"keys": list(purge)})) if purge else None
        return _cutover(row), outbox

    def snapshot(self) -> tuple[tuple[Any, ...], list[Cutover], dict[str, str], set[str]]:
        """Head, cutover log, consumed grants and audited grant digests, in one transaction."""
        state = self.store.pointer(self.env)
        return state.head, [_cutover(r) for r in state.cutovers], state.consumed, state.audited


def _cutover(row: CutoverRow) -> Cutover:
    grant = CutoverGrant.from_json(orjson.loads(row.grant))
    return Cutover(row.seq, row.at, row.release_id, grant, row.manifest, row.prev_hash, row.hash)
