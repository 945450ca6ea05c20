"""The metadata store port: what the API needs to remember, whatever engine keeps it.

SQLite is the embedded default; PostgreSQL comes behind the same interface.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any


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

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "digest": self.digest,
            "row_count": self.row_count,
            "schema": [{"name": c.name, "type": c.type} for c in self.schema],
            "checksum": self.checksum,
            "created_at": self.created_at,
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
        )


@dataclass(frozen=True)
class IngestRecord:
    job_id: str
    dataset: str
    upload: str
    accepted_at: float
    version_digest: str | None = None


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


class MetadataStore(abc.ABC):
    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """A unit of work; the handle may be passed to `Queue.enqueue(tx=...)` on the same engine."""

    @abc.abstractmethod
    def record_ingest(self, tx: Any, record: IngestRecord) -> None: ...

    @abc.abstractmethod
    def ingest(self, job_id: str) -> IngestRecord | None: ...

    @abc.abstractmethod
    def record_version(self, job_id: str, version: VersionInfo) -> bool:
        """Publish a version for an ingest job. Idempotent per job: False when already applied."""

    @abc.abstractmethod
    def current(self, dataset: str) -> VersionInfo | None: ...

    @abc.abstractmethod
    def version(self, dataset: str, digest: str) -> VersionInfo | None: ...

    @abc.abstractmethod
    def versions(self, dataset: str) -> list[VersionInfo]: ...

    @abc.abstractmethod
    def datasets(self) -> Iterator[DatasetInfo]: ...

    @abc.abstractmethod
    def set_progress(self, job_id: str, progress: Progress) -> None: ...

    @abc.abstractmethod
    def progress(self, job_id: str) -> Progress | None: ...

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreError when the engine cannot answer."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class StoreError(Exception):
    """The engine behind the store failed; callers never see a driver's own exception."""
