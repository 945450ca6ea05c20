"""A release manifest: staging's dataset versions frozen, named by the digest of its canonical form.

The id is computed, never chosen, so two processes that freeze the same state agree on it and a
manifest cannot be edited without changing its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from madbwpu_r.signing import canonical_json, digest

__all__ = [
    "DatasetEntry",
    "Manifest",
    "ManifestDiff",
    "ManifestError",
    "diff",
    "RELEASE_ID_PATTERN",
]

MANIFEST_FORMAT = "madbwpu-r/release-manifest/v1"
RELEASE_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest document is malformed or does not match its id."""


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset as the release serves it: the immutable version and what identifies its rows."""

    name: str
    digest: str
    row_count: int
    checksum: str
    schema: tuple[tuple[str, str], ...]
    #: SHA-256 of the version file's bytes: its key in every environment's blob store.
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "digest": self.digest,
            "row_count": self.row_count,
            "checksum": self.checksum,
            "schema": [{"name": n, "type": t} for n, t in self.schema],
        }
        if self.sha256 is not None:
            doc["sha256"] = self.sha256
        return doc

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetEntry:
        try:
            return cls(
                name=str(data["name"]),
                digest=str(data["digest"]),
                row_count=int(data["row_count"]),
                checksum=str(data["checksum"]),
                schema=tuple((str(c["name"]), str(c["type"])) for c in data["schema"]),
                sha256=None if data.get("sha256") is None else str(data["sha256"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"a dataset entry is malformed: {exc!r}") from None


@dataclass(frozen=True)
class Manifest:
    """What a release is. Datasets are kept sorted by name so the canonical form is unique."""

    project: str
    source_env: str
    code_version: str
    cut_by: str
    cut_at: float
    datasets: tuple[DatasetEntry, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ManifestError("a dataset appears twice in the manifest")
        object.__setattr__(self, "datasets", tuple(sorted(self.datasets, key=lambda d: d.name)))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "project": self.project,
            "source_env": self.source_env,
            "code_version": self.code_version,
            "cut_by": self.cut_by,
            "cut_at": self.cut_at,
            "datasets": [d.to_json() for d in self.datasets],
        }

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def release_id(self) -> str:
        return digest(self.canonical())

    def dataset(self, name: str) -> DatasetEntry | None:
        return next((d for d in self.datasets if d.name == name), None)

    @classmethod
    def from_json(cls, data: dict[str, Any], expected_id: str | None = None) -> Manifest:
        """Parse a stored or received manifest; with `expected_id`, refuse one that was edited."""
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"not a {MANIFEST_FORMAT} document")
        try:
            manifest = cls(
                project=str(data["project"]),
                source_env=str(data["source_env"]),
                code_version=str(data["code_version"]),
                cut_by=str(data["cut_by"]),
                cut_at=float(data["cut_at"]),
                datasets=tuple(DatasetEntry.from_json(d) for d in data["datasets"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"the manifest is malformed: {exc!r}") from None
        if expected_id is not None and manifest.release_id != expected_id:
            raise ManifestError(
                f"the manifest's digest is {manifest.release_id}, not {expected_id}: it was altered"
            )
        return manifest


@dataclass(frozen=True)
class Change:
    name: str
    old: DatasetEntry
    new: DatasetEntry


@dataclass(frozen=True)
class ManifestDiff:
    added: tuple[DatasetEntry, ...]
    removed: tuple[DatasetEntry, ...]
    changed: tuple[Change, ...]

    @property
    def touched(self) -> tuple[str, ...]:
        """Every dataset whose served data differs: exactly what the edge must forget."""
        names = [d.name for d in self.added + self.removed] + [c.name for c in self.changed]
        return tuple(sorted(names))

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [
                {"name": d.name, "rows": d.row_count, "digest": d.digest} for d in self.added
            ],
            "removed": [
                {"name": d.name, "rows": d.row_count, "digest": d.digest} for d in self.removed
            ],
            "changed": [
                {
                    "name": c.name,
                    "rows_before": c.old.row_count,
                    "rows_after": c.new.row_count,
                    "digest_before": c.old.digest,
                    "digest_after": c.new.digest,
                }
                for c in self.changed
            ],
        }


def diff(old: Manifest | None, new: Manifest) -> ManifestDiff:
    """Datasets added, removed and changed (by version digest) from `old` to `new`."""
    before = {d.name: d for d in (old.datasets if old else ())}
    after = {d.name: d for d in new.datasets}
    return ManifestDiff(
        added=tuple(after[n] for n in sorted(after.keys() - before.keys())),
        removed=tuple(before[n] for n in sorted(before.keys() - after.keys())),
        changed=tuple(
            Change(n, before[n], after[n])
            for n in sorted(before.keys() & after.keys())
            if before[n].digest != after[n].digest
        ),
    )
