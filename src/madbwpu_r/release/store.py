"""The project's release store: its state over the metadata store port (`store.ledger` documents).

Releases, QA decisions, guardrail policies and revocations, deploys and archives are canonical
JSON documents; every write commits together with its chained event and its audit entry, so
nothing changes without its record, on SQLite or PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

from madbwpu_r.guardrail.signed import Revocation, SignedPolicy
from madbwpu_r.release.audit import audit_record
from madbwpu_r.release.decisions import QaDecision
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.manifest import Manifest
from madbwpu_r.release.pipeline import DeployRecord
from madbwpu_r.signing import canonical_json, digest
from madbwpu_r.store import MetadataStore, UnitOfWork
from madbwpu_r.store.ledger import GENESIS, LedgerEvent, event_hash

__all__ = ["ArchiveRecord", "ProjectStore"]


@dataclass(frozen=True)
class ArchiveRecord:
    deploy_id: str
    digest: str
    location: str
    created_at: float


def _record(
    uow: UnitOfWork, actor: str, action: str, target: str, outcome: str, evidence: dict[str, Any]
) -> LedgerEvent:
    event = uow.record_event(actor, action, target, outcome, evidence)
    # The project's audit log, in this same transaction: no event without its entry.
    uow.audit(audit_record(actor, action, target, outcome, evidence))
    return event


class ProjectStore:
    """`ReleaseStore` over one `MetadataStore` (the project's, not an environment's)."""

    def __init__(self, store: MetadataStore):
        self.store = store

    def close(self) -> None:
        self.store.close()

    def project_name(self, default: str) -> str:
        """The name grants are bound to: chosen once, by the first process that opens the
        project's store, then the same for every command and API sharing that store."""
        doc = self.store.document("project", "name")
        if doc is None:
            with self.store.unit_of_work() as uow:
                uow.put_document("project", "name", orjson.dumps(default))
            doc = self.store.document("project", "name")
        return str(orjson.loads(doc or orjson.dumps(default)))

    # ---- releases and QA -------------------------------------------------------------------
    def put_release(self, manifest: Manifest, actor: str) -> bool:
        with self.store.unit_of_work() as uow:
            added = uow.put_document("release", manifest.release_id, manifest.canonical())
            if added:
                _record(
                    uow, actor, "release.cut", manifest.release_id, "ok",
                    {"datasets": {d.name: d.digest for d in manifest.datasets}},
                )  # fmt: skip
            return added

    def release(self, release_id: str) -> Manifest | None:
        doc = self.store.document("release", release_id)
        return Manifest.from_json(orjson.loads(doc), expected_id=release_id) if doc else None

    def releases(self) -> list[Manifest]:
        manifests = [Manifest.from_json(orjson.loads(d)) for d in self.store.documents("release")]
        return sorted(manifests, key=lambda m: m.cut_at)

    def add_decision(self, decision: QaDecision) -> None:
        doc = canonical_json(decision.to_json())
        with self.store.unit_of_work() as uow:
            uow.put_document("decision", digest(doc), doc, index=decision.release_id)
            _record(
                uow, decision.signer, f"qa.{decision.kind}", decision.release_id, "ok",
                {"note_digest": digest(decision.note.encode()),
                 "signature": decision.signature[:16]},
            )  # fmt: skip

    def decisions(self, release_id: str | None = None) -> list[QaDecision]:
        docs = self.store.documents("decision", index=release_id)
        return [QaDecision.from_json(orjson.loads(d)) for d in docs]

    # ---- guardrails ------------------------------------------------------------------------
    def put_policy(self, signed: SignedPolicy) -> None:
        with self.store.unit_of_work() as uow:
            if not uow.put_document("policy", signed.token, canonical_json(signed.to_json())):
                raise Refused(
                    "token-exists",
                    f"a guardrail with token {signed.token!r} exists; tokens are never reused",
                )
            _record(
                uow, signed.signer, "guardrail.created", signed.token, "ok",
                {"policy_digest": signed.digest},
            )  # fmt: skip

    def policy(self, token: str) -> SignedPolicy | None:
        doc = self.store.document("policy", token)
        return SignedPolicy.from_json(orjson.loads(doc)) if doc else None

    def add_revocation(self, revocation: Revocation) -> None:
        doc = canonical_json(revocation.to_json())
        with self.store.unit_of_work() as uow:
            uow.put_document("revocation", digest(doc), doc, index=revocation.token)
            _record(
                uow, revocation.revoked_by, "guardrail.revoked", revocation.token, "ok",
                {"policy_digest": revocation.policy_digest, "reason": revocation.reason},
            )  # fmt: skip

    def revocations(self, token: str) -> list[Revocation]:
        docs = self.store.documents("revocation", index=token)
        return [Revocation.from_json(orjson.loads(d)) for d in docs]

    # ---- deploys ---------------------------------------------------------------------------
    def save_deploy(self, record: DeployRecord, event: str, evidence: dict[str, Any]) -> None:
        with self.store.unit_of_work() as uow:
            uow.put_document(
                "deploy", record.deploy_id, canonical_json(record.to_json()),
                index=record.environment, replace=True,
            )  # fmt: skip
            outcome = "ok"
            for suffix in ("failed", "waiting", "interrupted"):
                if event.endswith("." + suffix):
                    outcome = suffix
            _record(
                uow, record.requester, event, record.deploy_id, outcome,
                {"release_id": record.release_id, "status": record.status, **evidence},
            )  # fmt: skip

    def deploy(self, deploy_id: str) -> DeployRecord | None:
        doc = self.store.document("deploy", deploy_id)
        return DeployRecord.from_json(orjson.loads(doc)) if doc else None

    def deploys(self, environment: str | None = None) -> list[DeployRecord]:
        docs = self.store.documents("deploy", index=environment or None)
        records = [DeployRecord.from_json(orjson.loads(d)) for d in docs]
        return sorted(records, key=lambda d: d.created_at)

    # ---- archives --------------------------------------------------------------------------
    def put_archive(self, record: ArchiveRecord) -> None:
        with self.store.unit_of_work() as uow:
            uow.put_document("archive", record.deploy_id, canonical_json(asdict(record)))

    def archive(self, deploy_id: str) -> ArchiveRecord | None:
        doc = self.store.document("archive", deploy_id)
        return ArchiveRecord(**orjson.loads(doc)) if doc else None

    def archives(self) -> list[ArchiveRecord]:
        records = [ArchiveRecord(**orjson.loads(d)) for d in self.store.documents("archive")]
        return sorted(records, key=lambda a: a.created_at)

    # ---- the event log ---------------------------------------------------------------------
    def record(
        self, actor: str, action: str, target: str, outcome: str, evidence: dict[str, Any]
    ) -> LedgerEvent:
        """Append one event on its own (a refusal changes nothing else)."""
        with self.store.unit_of_work() as uow:
            return _record(uow, actor, action, target, outcome, evidence)

    def events(
        self, target: str | None = None, action_prefix: str | None = None
    ) -> list[LedgerEvent]:
        return self.store.events(target, action_prefix)

    def verify_chain(self) -> int | None:
        """The seq of the first event that does not chain to the one before it, else None."""
        prev = GENESIS
        for event in self.store.events():
            if event_hash(prev, event.body()) != event.hash:
                return event.seq
            prev = event.hash
        return None
