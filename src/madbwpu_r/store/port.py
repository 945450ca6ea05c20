"""The metadata store port: what the product remembers, whatever engine keeps it.

Writes go through a unit of work: one engine transaction holding the domain writes and the
outbox messages they cause (a job to enqueue, a purge to send), committed together. A relay
delivers the messages after the commit (`madbwpu_r.catalog.relay`). Reads need no unit of work.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from madbwpu_r.store.ledger import LedgerReads, LedgerWrites

__all__ = [
    "Column",
    "DatasetInfo",
    "IngestRecord",
    "MetadataStore",
    "OutboxMessage",
    "OutboxRow",
    "Progress",
    "UnitOfWork",
    "VersionInfo",
]

OutboxKind = Literal["enqueue", "purge", "retry"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "integer" | "real" | "text"


@dataclass(frozen=True)
class VersionInfo:
    """An immutable dataset version, named by the digest of its content."""

    dataset: str
    digest: str
    row_count: int
    schema: tuple[Column, ...]
    checksum: str
    created_at: float = 0.0
    sha256: str | None = None  # of the version file's bytes: its key in the blob store

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "digest": self.digest,
            "row_count": self.row_count,
            "schema": [{"name": c.name, "type": c.type} for c in self.schema],
            "checksum": self.checksum,
            "created_at": self.created_at,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionInfo:
        return cls(
            dataset=data["dataset"],
            digest=data["digest"],
            row_count=int(data["row_count"]),
            schema=tuple(Column(c["name"], c["type"]) for c in data["schema"]),
            checksum=data["checksum"],
            created_at=float(data.get("created_at") or 0.0),
            sha256=data.get("sha256"),
        )


@dataclass(frozen=True)
class IngestRecord:
    job_id: str
    dataset: str
    upload: str
    accepted_at: float
    version_digest: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Progress:
    attempt: int
    fraction: float
    message: str
    updated_at: float


@dataclass
class DatasetInfo:
    name: str
    current: VersionInfo | None
    versions: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxMessage:
    """A message a unit of work causes; delivered at least once after its commit."""

    kind: OutboxKind
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutboxRow:
    """A committed outbox message; `seq` orders delivery and keys its idempotent effect."""

    seq: int
    kind: str
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    last_error: str | None = None


class UnitOfWork(LedgerWrites):
    """The writes of one service operation: all of them commit, or none does."""

    @abc.abstractmethod
    def record_ingest(self, record: IngestRecord) -> IngestRecord:
        """Record an accepted ingest; with an idempotency key used before, return that one."""

    @abc.abstractmethod
    def record_version(self, job_id: str, version: VersionInfo) -> bool:
        """Publish a version for an ingest job, once per job: False when already applied.

        Raises UnknownJob for a job the store never accepted, or for another dataset's job.
        """

    @abc.abstractmethod
    def set_progress(self, job_id: str, progress: Progress) -> None:
        """Keep the progress of the newest attempt; an older attempt's report changes nothing."""

    @abc.abstractmethod
    def emit(self, message: OutboxMessage) -> int:
        """Add a message to the outbox; returns its sequence number.

        A purge message gets `epoch` and a gapless `seq` of its own, so edges can tell a
        missed purge from a repeated one.
        """

    @abc.abstractmethod
    def forget_uploads(self, job_ids: list[str]) -> None:
        """Mark these ingests' uploads as removed (with the audit entry of the purge)."""

    def audit(self, entry: Any) -> None:
        """Append an `audit.records.AuditRecord` to the environment's log in this transaction."""
        raise NotImplementedError("this store does not keep an audit log")


class MetadataStore(LedgerReads):
    """Datasets, versions, ingests, job progress and the outbox of one environment; and the
    release ledger (`store.ledger`) of a project or an environment."""

    @abc.abstractmethod
    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """One engine transaction; leaving the block commits, an exception rolls it back."""

    # ---- reads ------------------------------------------------------------------------------

    @abc.abstractmethod
    def ingest(self, job_id: str) -> IngestRecord | None: ...

    @abc.abstractmethod
    def current(self, dataset: str) -> VersionInfo | None: ...

    @abc.abstractmethod
    def version(self, dataset: str, digest: str) -> VersionInfo | None: ...

    @abc.abstractmethod
    def versions(self, dataset: str) -> list[VersionInfo]: ...

    @abc.abstractmethod
    def datasets(self) -> Iterator[DatasetInfo]: ...

    @abc.abstractmethod
    def progress(self, job_id: str) -> Progress | None: ...

    # ---- outbox -----------------------------------------------------------------------------

    @abc.abstractmethod
    def pending(self, limit: int = 100, kinds: Sequence[str] | None = None) -> list[OutboxRow]:
        """Undelivered outbox rows (of these kinds only, when given), oldest first."""

    @abc.abstractmethod
    def delivered(self, seq: int) -> None:
        """Mark a row delivered; it is not handed out again."""

    @abc.abstractmethod
    def failed(self, seq: int, error: str) -> None:
        """Count a failed delivery; the row stays pending."""

    # ---- retention --------------------------------------------------------------------------

    @abc.abstractmethod
    def kept_uploads(self, before: float, limit: int = 1000) -> list[IngestRecord]:
        """Ingests accepted before `before` whose upload was not removed yet, oldest first."""

    @abc.abstractmethod
    def forget_uploads(self, job_ids: list[str]) -> None:
        """Mark these ingests' uploads as removed."""

    @abc.abstractmethod
    def sweep_outbox(self, before: float) -> int:
        """Delete delivered outbox rows older than `before`; returns how many."""

    # ---- lifecycle --------------------------------------------------------------------------

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable when the engine cannot answer."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
