"""Archives: a self-contained, write-once export of a log segment that anyone can verify offline.

An archive is `archive.json` (format in the README: entries, their inclusion proofs against a
fresh signed checkpoint, every earlier checkpoint with its consistency proof, the identity acts
that establish the keys, all signed by the audit service) and zero or more `signoffs/*.json`
added later by compliance identities. It is a directory, or a single `.tar` file holding the same
members; a signoff only ever adds a member, nothing already written changes.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from madbwpu_r.audit.checkpoint import SIGNOFF_PURPOSE, Checkpoint, CheckpointError
from madbwpu_r.audit.log import AuditLog
from madbwpu_r.audit.merkle import Tree, leaf_hash
from madbwpu_r.audit.records import AuditRecord, Entry, InvalidRecord, format_time
from madbwpu_r.audit.verify import (
    Report,
    check_chain,
    check_checkpoints,
    check_consistency,
    check_inclusion,
    check_signoff,
)
from madbwpu_r.identity.acts import ActError, SignedAct, replay
from madbwpu_r.signing import (
    SignatureError,
    SigningKey,
    b64decode,
    b64encode,
    canonical_json,
    digest,
    fingerprint,
    public_key_from_b64,
    sign,
    verify,
)

__all__ = [
    "ARCHIVE_PURPOSE",
    "FORMAT",
    "Archive",
    "ArchiveError",
    "export_archive",
    "load_archive",
    "pending",
    "sign_off",
    "verify_archive",
]

FORMAT = "madbwpu-r-audit-archive/1"
ARCHIVE_PURPOSE = "audit-archive"


class ArchiveError(Exception):
    """An archive cannot be written or read (exists already, unreadable, not an archive)."""


@dataclass(frozen=True)
class Archive:
    path: Path
    doc: dict[str, Any]
    signoffs: list[dict[str, Any]]
    raw: bytes  # archive.json's bytes, whose digest names the archive

    @property
    def digest(self) -> str:
        return digest(self.raw)

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint.parse(self.doc["checkpoint"])


def _proof(hashes: Sequence[bytes]) -> list[str]:
    return [b64encode(h) for h in hashes]


def _unproof(values: Sequence[str]) -> list[bytes]:
    return [b64decode(v) for v in values]


def _range(
    entries: list[Entry], since: float | None, until: float | None, deploy: str | None
) -> tuple[int, int]:
    """The contiguous segment holding every selected entry (others between them included)."""

    def ts(e: Entry) -> float:
        return _timestamp(e.time)

    chosen = [
        e.seq
        for e in entries
        if (since is None or ts(e) >= since)
        and (until is None or ts(e) < until)
        and (
            deploy is None
            or e.target == f"deploy:{deploy}"
            or e.target.startswith(f"deploy:{deploy}/")
        )
    ]
    if not chosen:
        raise ArchiveError("no entry matches the selection")
    return chosen[0], chosen[-1] + 1


def _timestamp(text: str) -> float:
    from datetime import UTC, datetime

    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def export_archive(
    log: AuditLog,
    log_name: str,
    key: SigningKey,
    acts: list[SignedAct],
    out: Path,
    *,
    actor: str,
    since: float | None = None,
    until: float | None = None,
    deploy: str | None = None,
) -> Archive:
    """Checkpoint the log now, then write the selected segment with everything to verify it."""
    out = Path(out)
    if out.exists():
        raise ArchiveError(f"{out} exists: archives are written once")
    final = log.checkpoint(key)
    entries = list(log.entries(0, final.size))
    start, stop = _range(entries, since, until, deploy)
    tree = Tree(leaf_hash(e.leaf()) for e in entries)
    history = []
    for cp in log.checkpoints(final.size):
        if cp.body_hash() == final.body_hash():
            break
        proof = tree.consistency_proof(cp.size, final.size) if cp.size else []
        history.append({"checkpoint": cp.text(), "consistency": _proof(proof)})
    members = replay(acts)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "origin": log.origin,
        "log": log_name,
        "log_key": key.name,
        "created": format_time(time.time()),
        "selection": {
            "since": None if since is None else format_time(since),
            "until": None if until is None else format_time(until),
            "deploy": deploy,
        },
        "start": start,
        "stop": stop,
        "first_prev": entries[start].prev,
        "entries": [e.to_json() for e in entries[start:stop]],
        "inclusion": [_proof(tree.inclusion_proof(e.seq, final.size)) for e in entries[start:stop]],
        "checkpoint": final.text(),
        "history": history,
        "identity_acts": [a.to_json() for a in acts],
        "keys": [
            {
                "name": m.name,
                "public_key": m.public_key,
                "roles": sorted(m.roles),
                "revoked": m.revoked,
            }
            for _, m in sorted(members.items())
        ],
    }
    doc["signature"] = sign(key, ARCHIVE_PURPOSE, canonical_json(doc))
    raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    _write_member(out, "archive.json", raw, create=True)
    archive = Archive(out, doc, [], raw)
    log.append(
        AuditRecord(
            actor=actor,
            action="audit.archive",
            target=f"archive:{final.body_hash().hex()}",
            evidence={"archive": archive.digest, "checkpoint": final.body_hash().hex()},
            detail=f"{out} entries {start}..{stop - 1}",
        )
    )
    return archive


def _write_member(out: Path, name: str, data: bytes, create: bool = False) -> None:
    if out.suffix == ".tar":
        mode: Literal["x", "a"] = "x" if create else "a"
        try:
            with tarfile.open(out, mode) as tar:
                if not create and name in tar.getnames():
                    raise ArchiveError(f"{out} already has {name}")
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o444
                tar.addfile(info, io.BytesIO(data))
        except FileExistsError:
            raise ArchiveError(f"{out} exists: archives are written once") from None
        return
    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        raise ArchiveError(f"{target} exists: archives are written once") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def load_archive(path: Path) -> Archive:
    path = Path(path)
    members: dict[str, bytes] = {}
    try:
        if path.is_dir():
            for p in sorted(path.rglob("*.json")):
                members[str(p.relative_to(path))] = p.read_bytes()
        else:
            with tarfile.open(path, "r") as tar:
                for info in tar.getmembers():
                    f = tar.extractfile(info) if info.isfile() else None
                    if f is not None:
                        members[info.name] = f.read()
    except (OSError, tarfile.TarError) as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc}") from None
    raw = members.get("archive.json")
    if raw is None:
        raise ArchiveError(f"{path} is not an audit archive (no archive.json)")
    try:
        doc = orjson.loads(raw)
        signoffs = [
            orjson.loads(v) for k, v in sorted(members.items()) if k.startswith("signoffs/")
        ]
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(f"{path}: a member is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArchiveError(f"{path}: not a {FORMAT} archive")
    return Archive(path, doc, signoffs, raw)


def sign_off(archive: Archive, key: SigningKey, acts: list[SignedAct], log: AuditLog) -> Path:
    """Co-sign the archive's checkpoint as compliance; the signoff is itself an audited act."""
    cp = archive.checkpoint
    line = cp.signed(key, SIGNOFF_PURPOSE).signatures[-1]
    signoff = {
        "signer": key.name,
        "signature": line.line().rstrip("\n"),
        "checkpoint": b64encode(cp.body_hash()),
        "archive": archive.digest,
        "time": format_time(time.time()),
        "identity_acts": [a.to_json() for a in acts],
    }
    name = f"signoffs/{key.name}-{int(time.time() * 1000)}.json"
    log.append(
        AuditRecord(
            actor=key.name,
            action="audit.signoff",
            target=f"archive:{cp.body_hash().hex()}",
            evidence={"archive": archive.digest, "checkpoint": cp.body_hash().hex()},
            detail=str(archive.path),
        )
    )
    _write_member(archive.path, name, orjson.dumps(signoff, option=orjson.OPT_INDENT_2) + b"\n")
    return archive.path / name if archive.path.is_dir() else archive.path


def verify_archive(archive: Archive, trusted: dict[str, str] | None = None) -> Report:
    """Every check an offline verifier makes; `trusted` maps names to known key fingerprints."""
    doc = archive.doc
    report = Report(str(archive.path))
    try:
        cp = Checkpoint.parse(doc["checkpoint"])
        history = [
            (Checkpoint.parse(h["checkpoint"]), _unproof(h["consistency"])) for h in doc["history"]
        ]
        entries = [Entry.from_json(e) for e in doc["entries"]]
        inclusion = [_unproof(p) for p in doc["inclusion"]]
        acts = [SignedAct.from_json(a) for a in doc["identity_acts"]]
        start, stop, origin, log_key = doc["start"], doc["stop"], doc["origin"], doc["log_key"]
    except (KeyError, TypeError, CheckpointError, InvalidRecord, SignatureError, ActError) as exc:
        report.add("malformed", f"archive.json: {exc}")
        return report
    report.entries, report.checkpoints = len(entries), len(history) + 1

    # Keys: recomputed from the signed identity acts, then compared with what is trusted.
    try:
        members = replay(acts)
    except ActError as exc:
        report.add("key-mismatch", f"the archive's identity acts do not verify: {exc}")
        members = {}
    listed = {k.get("name"): k.get("public_key") for k in doc.get("keys", [])}
    for name, m in members.items():
        if listed.get(name) != m.public_key:
            report.add(
                "key-mismatch", f"the key listed for {name} is not the one its acts registered"
            )
    for name, fp in (trusted or {}).items():
        trusted_member = members.get(name)
        if (
            trusted_member is not None
            and fingerprint(public_key_from_b64(trusted_member.public_key)) != fp
        ):
            report.add("key-mismatch", f"{name}'s key in the archive is not the trusted {fp}")
    signer = members.get(log_key)
    if signer is not None and "service-audit" not in signer.roles:
        report.add("key-mismatch", f"{log_key} does not hold the service-audit role")
    log_public = None if signer is None else public_key_from_b64(signer.public_key)

    # The archive as a whole, then its checkpoints and their consistency.
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    if log_public is not None:
        try:
            verify(log_public, ARCHIVE_PURPOSE, canonical_json(unsigned), str(doc.get("signature")))
        except SignatureError:
            report.add(
                "bad-signature", "archive.json's signature by the audit service does not verify"
            )
    check_checkpoints(
        report,
        [h for h, _ in history] + [cp],
        origin,
        (log_key, log_public) if log_public else None,
    )
    for number, (earlier, proof) in enumerate(history):
        check_consistency(report, earlier, cp, proof, f"checkpoint {number} (size {earlier.size})")

    # Entries: positions, chain, and each one's inclusion in the signed tree.
    if not start <= stop <= cp.size:
        report.add(
            "malformed", f"the range {start}..{stop} is not within the checkpoint's {cp.size}"
        )
    if len(entries) < stop - start:
        report.add(
            "truncated",
            f"the archive covers {stop - start} entries but holds {len(entries)}",
            start + len(entries),
        )
    elif len(entries) > stop - start:
        report.add(
            "out-of-order", f"the archive covers {stop - start} entries but holds {len(entries)}"
        )
    leaves = check_chain(report, entries, start, doc.get("first_prev"))
    if len(inclusion) != len(entries):
        report.add("malformed", "there is not one inclusion proof per entry")
    for i, leaf in enumerate(leaves):
        if i < len(inclusion):
            check_inclusion(report, leaf, start + i, cp, inclusion[i])

    # Compliance signoffs, each with the identity acts current when it was made.
    for s in archive.signoffs:
        _check_signoff(report, cp, acts, s)
    return report


def _check_signoff(
    report: Report, cp: Checkpoint, acts: list[SignedAct], s: dict[str, Any]
) -> None:
    try:
        line = Checkpoint.parse(cp.body() + "\n" + s["signature"] + "\n").signatures[-1]
        later = [SignedAct.from_json(a) for a in s["identity_acts"]]
    except (KeyError, TypeError, CheckpointError, ActError) as exc:
        report.add("forged-signoff", f"a signoff is malformed: {exc}")
        return
    if [a.to_json() for a in later[: len(acts)]] != [a.to_json() for a in acts]:
        report.add(
            "forged-signoff", f"the signoff by {line.name} rewrites the archive's identity acts"
        )
        return
    try:
        members = replay(later)
    except ActError as exc:
        report.add("forged-signoff", f"the signoff by {line.name}: {exc}")
        return
    m = members.get(line.name)
    public = None if m is None else public_key_from_b64(m.public_key)
    check_signoff(
        report, cp, line, public, frozenset(m.roles) if m and not m.revoked else frozenset()
    )


@dataclass(frozen=True)
class PendingArchive:
    log: str
    seq: int
    time: str
    path: str
    checkpoint: str
    actor: str


def pending(log: AuditLog, log_name: str) -> list[PendingArchive]:
    """Archives this log recorded that no compliance signoff names yet."""
    archived = log.query(action="audit.archive", limit=1 << 30)
    signed = {
        e.evidence.get("checkpoint") for e in log.query(action="audit.signoff", limit=1 << 30)
    }
    return [
        PendingArchive(
            log_name,
            e.seq,
            e.time,
            e.detail.split(" entries ")[0],
            e.evidence["checkpoint"],
            e.actor,
        )  # fmt: skip
        for e in archived
        if e.evidence.get("checkpoint") not in signed
    ]
