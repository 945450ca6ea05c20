"""Archives: a self-contained, write-once export of a log segment that anyone can verify offline.

An archive is `archive.json` (format in the README: entries, their inclusion proofs against a
fresh signed checkpoint, every earlier checkpoint with its consistency proof, the identity acts
that establish the keys, all signed by the audit service) and zero or more `signoffs/*.json`
added later by compliance identities. It is a directory, or a single `.tar` file holding the same
members, or (scaled out, where processes share no disk) a key prefix in a blob store named by an
archive URL `file:///DIR/...` or `s3://BUCKET/PREFIX/...`, written and read through the
`BlobStore` port. A signoff only ever adds a member, nothing already written changes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from madbwpu_r.audit import _sql
from madbwpu_r.audit.checkpoint import SIGNOFF_PURPOSE, Checkpoint, CheckpointError
from madbwpu_r.audit.log import AuditLog
from madbwpu_r.audit.merkle import Tree
from madbwpu_r.audit.records import AuditRecord, Entry, InvalidRecord, format_time
from madbwpu_r.audit.verify import (
    Report,
    check_chain,
    check_checkpoints,
    check_consistency,
    check_inclusion,
    check_rows,
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

if TYPE_CHECKING:
    from madbwpu_r.blobs import BlobStore

_T = TypeVar("_T")

__all__ = [
    "ARCHIVE_PURPOSE",
    "FORMAT",
    "Archive",
    "ArchiveError",
    "ArchiveExists",
    "archive_exists",
    "archive_url",
    "export_archive",
    "is_archive_url",
    "load_archive",
    "pending",
    "record_archive",
    "sign_off",
    "verify_archive",
]

FORMAT = "madbwpu-r-audit-archive/1"
ARCHIVE_PURPOSE = "audit-archive"


class ArchiveError(Exception):
    """An archive cannot be written or read (exists already, unreadable, not an archive)."""


class ArchiveExists(ArchiveError):
    """What was to be written is there already (perhaps by a concurrent writer): written once."""


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

Where = Path | str  # a local directory or .tar file, or an archive URL in a blob store


def is_archive_url(where: Where) -> bool:
    """An archive in a blob store (`file:///...`, `s3://...`) rather than a local path."""
    return isinstance(where, str) and _URL.match(where) is not None


def archive_url(blob_url: str, log_name: str, name: str) -> str:
    """Where archive `name` of a log lives in an environment's blob store:
    `BLOB_URL/audit/archives/LOG/NAME` (the URL's options kept)."""
    from madbwpu_r.blobs import InvalidKey, check_key

    try:
        if "/" in name:
            raise InvalidKey(name)
        check_key(name)
    except InvalidKey:
        raise ArchiveError(
            f"{name!r} is not an archive name for the blob store: one part of "
            "A-Z a-z 0-9 . _ = - (not starting with '.'), e.g. production-2026-12"
        ) from None
    parts = urlsplit(blob_url)
    path = f"{parts.path.rstrip('/')}/audit/archives/{log_name}/{name}"
    return urlunsplit(parts._replace(path=path))


def _where(where: Where) -> Where:
    return where if is_archive_url(where) else Path(where)


@dataclass(frozen=True)
class Archive:
    path: Where  # as given: a local path, or an archive URL in a blob store
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


def export_archive(
    log: AuditLog,
    log_name: str,
    key: SigningKey,
    acts: list[SignedAct],
    out: Where,
    *,
    actor: str,
    since: float | None = None,
    until: float | None = None,
    deploy: str | None = None,
) -> Archive:
    """Checkpoint the log now, then write the selected segment with everything to verify it."""
    out = _where(out)
    if archive_exists(out):  # early, before a checkpoint; the write itself is create-only
        raise ArchiveExists(f"{out} exists: archives are written once")
    final = log.checkpoint(key)
    d = log.db.dialect
    with log.db.read() as conn:  # one snapshot; nothing past the new checkpoint is read
        found = _sql.segment(conn, d, final.size, since=since, until=until, deploy=deploy)
        if found is None:
            raise ArchiveError("no entry matches the selection")
        start, stop = found
        leaves = check_rows(Report("export"), _sql.rows(conn, d, stop=final.size))
        entries = list(_sql.entries(conn, d, start, stop))
        earlier = [Checkpoint.parse(t) for t in _sql.checkpoints(conn, d, final.size)]
    tree = Tree(leaves)
    if len(tree) != final.size or tree.root() != final.root:
        raise ArchiveError(
            "the log does not match its own new checkpoint: run `audit verify --all`"
        )
    history = []
    for cp in earlier:
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
        "first_prev": entries[0].prev,
        "entries": [e.to_json() for e in entries],
        "inclusion": [_proof(tree.inclusion_proof(e.seq, final.size)) for e in entries],
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
    log.append(_archived(archive, actor))
    return archive


def _archived(archive: Archive, actor: str) -> AuditRecord:
    """The log's `audit.archive` entry for an archive (what `pending` lists)."""
    cp, doc = archive.checkpoint.body_hash().hex(), archive.doc
    return AuditRecord(
        actor=actor,
        action="audit.archive",
        target=f"archive:{cp}",
        evidence={"archive": archive.digest, "checkpoint": cp},
        detail=f"{archive.path} entries {doc['start']}..{doc['stop'] - 1}",
    )


def record_archive(log: AuditLog, archive: Archive, actor: str) -> bool:
    """Append the `audit.archive` entry of an archive written earlier, unless the log has it:
    a writer killed between the archive and its entry leaves it unlisted by `pending`."""
    record = _archived(archive, actor)
    known = log.query(action=record.action, target=record.target, limit=1 << 30)
    if any(e.evidence.get("archive") == archive.digest for e in known):
        return False
    log.append(record)
    return True


def archive_exists(out: Where) -> bool:
    """Whether `out` holds an archive's `archive.json` (whole or not: a put is atomic)."""
    out = _where(out)
    if isinstance(out, Path):
        return out.exists()
    with _blobs(out) as blobs:
        return _blob_call(out, lambda: blobs.exists("archive.json"))


@contextlib.contextmanager
def _blobs(url: str) -> Iterator[BlobStore]:
    """The blob store rooted at an archive URL (its keys are the archive's members)."""
    from madbwpu_r.blobs import BlobStoreError, open_blobs

    try:
        store = open_blobs(url)
    except BlobStoreError as exc:
        raise ArchiveError(f"archive {url}: {exc}") from None
    try:
        _blob_call(url, store.ping)  # the store answers (and, with ?create=1, has its bucket)
        yield store
    finally:
        store.close()


def _blob_call(url: str, call: Callable[[], _T]) -> _T:
    from madbwpu_r.blobs import BlobStoreError

    try:
        return call()
    except BlobStoreError as exc:
        raise ArchiveError(f"archive {url}: {exc}") from None


def _write_member(out: Where, name: str, data: bytes, create: bool = False) -> None:
    if isinstance(out, str):
        from madbwpu_r.blobs import BlobExists

        with _blobs(out) as blobs:

            def put() -> None:
                # Create-only, decided by the store: of writers racing for a member, one wins.
                try:
                    blobs.put(name, data, sha256=digest(data), create_only=True)
                except BlobExists:
                    what = "exists: archives are written once" if create else f"already has {name}"
                    raise ArchiveExists(f"{out} {what}") from None

            _blob_call(out, put)
        return
    if out.suffix == ".tar":
        mode: Literal["x", "a"] = "x" if create else "a"
        try:
            with tarfile.open(out, mode) as tar:
                if not create and name in tar.getnames():
                    raise ArchiveExists(f"{out} already has {name}")
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o444
                tar.addfile(info, io.BytesIO(data))
        except FileExistsError:
            raise ArchiveExists(f"{out} exists: archives are written once") from None
        return
    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        raise ArchiveExists(f"{target} exists: archives are written once") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _blob_members(url: str) -> dict[str, bytes]:
    parts = urlsplit(url)
    if parts.scheme == "file" and not Path(unquote(parts.path)).is_dir():
        raise ArchiveError(f"cannot read archive {url}: there is no such directory")
    with _blobs(url) as blobs:
        return _blob_call(
            url,
            lambda: {
                b.key: blobs.read_bytes(b.key) for b in blobs.list() if b.key.endswith(".json")
            },
        )


def load_archive(path: Where) -> Archive:
    path = _where(path)
    members: dict[str, bytes] = {}
    try:
        if isinstance(path, str):
            members = _blob_members(path)
        elif path.is_dir():
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


def sign_off(archive: Archive, key: SigningKey, acts: list[SignedAct], log: AuditLog) -> Where:
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
    where = archive.path
    if isinstance(where, Path) and where.is_dir():
        return where / name
    return f"{where}/{name}" if isinstance(where, str) else where


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
