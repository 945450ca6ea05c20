"""What the store keeps for releases: documents, the event chain, the release pointer.

The project's store (releases, QA decisions, guardrails, deploys, archives) holds signed or
canonical JSON documents by kind and key, and a hash-chained event log written in the same
transaction as the change it records. An environment's store holds its release pointer, the
cutover grants it consumed and its chained cutover log, moved together in one transaction.
The release package gives these documents their meaning; the store only keeps them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from madbwpu_r.signing import canonical_json, digest

__all__ = [
    "GENESIS",
    "CutoverRow",
    "LedgerEvent",
    "LedgerReads",
    "LedgerWrites",
    "PointerState",
    "event_hash",
]

GENESIS = "0" * 64


def event_hash(prev: str, body: dict[str, Any]) -> str:
    """Each event names the one before it: an edit, deletion or reordering breaks the chain."""
    return digest(prev.encode() + b"\n" + canonical_json(body))


@dataclass(frozen=True)
class LedgerEvent:
    seq: int
    at: float
    actor: str
    action: str
    target: str
    outcome: str  # "ok" | "refused" | "failed" | "waiting"
    evidence: dict[str, Any]
    hash: str

    def body(self) -> dict[str, Any]:
        """What the hash covers (everything but the hash)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "evidence": self.evidence,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}


@dataclass(frozen=True)
class CutoverRow:
    """One entry of an environment's cutover log, as stored (documents as canonical bytes)."""

    seq: int
    at: float
    release_id: str
    grant: bytes
    manifest: bytes
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class PointerState:
    """An environment's release pointer and what backs it, read in one transaction."""

    release_id: str | None
    seq: int | None
    latest_seq: int | None
    latest_hash: str | None
    cutovers: list[CutoverRow] = field(default_factory=list)
    consumed: dict[str, str] = field(default_factory=dict)  # grant id -> release id
    audited: set[str] = field(default_factory=set)  # grant digests in release.cutover entries

    @property
    def head(self) -> tuple[str | None, int | None, int | None, str | None]:
        return (self.release_id, self.seq, self.latest_seq, self.latest_hash)


# How a cutover entry's hash is computed from (previous hash, its seq, its time).
CutoverChain = Callable[[str, int, float], str]


class LedgerWrites(abc.ABC):
    """The ledger's writes inside a unit of work (mixed into `UnitOfWork`)."""

    @abc.abstractmethod
    def put_document(
        self, kind: str, key: str, doc: bytes, *, index: str = "", replace: bool = False
    ) -> bool:
        """Store a document; an existing key is kept (False) unless `replace`."""

    @abc.abstractmethod
    def document(self, kind: str, key: str) -> bytes | None:
        """A document read inside this transaction (for read-modify-write)."""

    @abc.abstractmethod
    def record_event(
        self, actor: str, action: str, target: str, outcome: str, evidence: dict[str, Any]
    ) -> LedgerEvent:
        """Chain an event onto the event log."""

    @abc.abstractmethod
    def switch_pointer(
        self,
        env: str,
        grant_id: str,
        release_id: str,
        grant: bytes,
        manifest: bytes,
        chain: CutoverChain,
    ) -> CutoverRow | None:
        """Consume the grant, append the cutover and move the pointer; None (nothing changed)
        when the grant was consumed before."""


class LedgerReads(abc.ABC):
    """The ledger's reads (mixed into `MetadataStore`)."""

    @abc.abstractmethod
    def document(self, kind: str, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def documents(self, kind: str, index: str | None = None) -> list[bytes]:
        """Every document of a kind (with that index, when given), oldest first."""

    @abc.abstractmethod
    def events(
        self, target: str | None = None, action_prefix: str | None = None
    ) -> list[LedgerEvent]: ...

    @abc.abstractmethod
    def pointer(self, env: str) -> PointerState:
        """The pointer, the whole cutover log, consumed grants and audited grant digests."""
