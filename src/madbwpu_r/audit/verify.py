"""Offline verification: chain, Merkle roots and proofs, checkpoint and signoff signatures.

Used by `audit verify` on an archive (public keys and identity acts from the archive itself,
optionally anchored to trusted fingerprints) and on the live logs (`--all`). Every check runs
and every failure is reported as a `Problem` with a kind that names what happened (edited,
missing, out-of-order, ...) and, where it is about one entry, that entry's position, so that
the first bad entry can be shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from madbwpu_r.audit.checkpoint import (
    CHECKPOINT_PURPOSE,
    SIGNOFF_PURPOSE,
    Checkpoint,
    CheckpointError,
    NoteSignature,
)
from madbwpu_r.audit.merkle import EMPTY_ROOT, ProofError, Tree, leaf_hash, verify_consistency
from madbwpu_r.audit.merkle import verify_inclusion as _verify_inclusion
from madbwpu_r.audit.records import GENESIS, Entry
from madbwpu_r.signing import digest

__all__ = ["KINDS", "Problem", "Report", "check_chain", "check_checkpoints", "check_roots"]

KINDS = {
    "edited": "an entry's content differs from what was chained or signed",
    "missing": "an entry is absent (deleted)",
    "out-of-order": "an entry is not where its position says (inserted or reordered)",
    "truncated": "entries a signed checkpoint covers are gone (tail deleted)",
    "rolled-back": "the log is behind, or not an extension of, a checkpoint kept elsewhere",
    "not-in-log": "an entry is not in the signed tree (edited, or swapped in from elsewhere)",
    "inconsistent": "two checkpoints of one log do not describe one growing log",
    "bad-signature": "a checkpoint or archive signature does not verify",
    "key-mismatch": "a public key differs from the trusted or the signed one (key replaced)",
    "forged-signoff": "a compliance signoff does not verify or its signer is not compliance",
    "malformed": "a file or field is not in the documented format",
}


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    seq: int | None = None

    def __str__(self) -> str:
        where = f"entry {self.seq}: " if self.seq is not None else ""
        return f"[{self.kind}] {where}{self.message}"


@dataclass
class Report:
    subject: str
    entries: int = 0
    checkpoints: int = 0
    signoffs: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, message: str, seq: int | None = None) -> None:
        assert kind in KINDS, kind
        self.problems.append(Problem(kind, message, seq))

    def first_bad_entry(self) -> Problem | None:
        located = [p for p in self.problems if p.seq is not None]
        return min(located, key=lambda p: p.seq or 0) if located else None

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}


def check_chain(
    report: Report, entries: Sequence[Entry], start: int, first_prev: str | None = None
) -> list[bytes]:
    """Positions and hash links; returns the leaf hashes in the order given."""
    leaves = []
    prev_hash = GENESIS if start == 0 else first_prev
    for i, entry in enumerate(entries):
        expected = start + i
        leaf = entry.leaf()
        leaves.append(leaf_hash(leaf))
        if entry.seq != expected:
            if entry.seq > expected:
                report.add(
                    "missing",
                    f"the entry at position {expected} is absent; found {entry.seq}",
                    expected,
                )
            else:
                report.add("out-of-order", f"found at position {expected}", entry.seq)
        elif prev_hash is not None and entry.prev != prev_hash:
            if i == 0:
                report.add("edited", "its prev does not link to the entry before it", entry.seq)
            else:
                report.add(
                    "edited",
                    f"its content no longer hashes to entry {entry.seq}'s prev",
                    entry.seq - 1,
                )
        prev_hash = digest(leaf)
    return leaves


def check_rows(report: Report, rows: Iterable[tuple[Any, ...]]) -> list[bytes]:
    """A whole live log as stored, streamed: positions, links and each row's own stored hash.

    The fast path of `check_chain` for millions of stored entries: one
    canonical encoding and two SHA-256 per row, no entry objects kept.
    """
    leaves: list[bytes] = []
    expected, prev_hash = 0, GENESIS
    sha, dumps, loads, sort = hashlib.sha256, orjson.dumps, orjson.loads, orjson.OPT_SORT_KEYS
    for seq, stamp, actor, action, target, outcome, detail, evidence, prev, stored in rows:
        leaf = dumps(
            {"action": action, "actor": actor, "detail": detail, "evidence": loads(evidence),
             "outcome": outcome, "prev": prev, "seq": seq, "target": target, "time": stamp},
            option=sort,
        )  # fmt: skip
        leaves.append(sha(b"\x00" + leaf).digest())
        own = sha(leaf).hexdigest()
        if seq != expected:
            if seq > expected:
                report.add(
                    "missing", f"the entry at position {expected} is absent; found {seq}", expected
                )
            else:
                report.add("out-of-order", f"found at position {expected}", seq)
        elif prev != prev_hash:
            report.add("edited", f"its content no longer hashes to entry {seq}'s prev", seq - 1)
        if own != stored:
            report.add("edited", "its content does not hash to its stored hash", seq)
        expected, prev_hash = expected + 1, own
    return leaves


def check_checkpoints(
    report: Report,
    checkpoints: Sequence[Checkpoint],
    origin: str,
    log_key: tuple[str, Ed25519PublicKey] | None,
) -> None:
    """Signatures by the log key, the `prev` links, and sizes that never shrink."""
    previous: Checkpoint | None = None
    for number, cp in enumerate(checkpoints):
        label = f"checkpoint {number} (size {cp.size})"
        if cp.origin != origin:
            report.add("inconsistent", f"{label} is of log {cp.origin!r}, not {origin!r}")
        if log_key is None:
            report.add("key-mismatch", f"{label}: no trusted key for the log's signer")
        else:
            name, public = log_key
            sigs = cp.signatures_by(name)
            if not sigs:
                report.add("bad-signature", f"{label} is not signed by {name}")
            for sig in sigs:
                try:
                    cp.verify_signature(sig, public, CHECKPOINT_PURPOSE)
                except CheckpointError as exc:
                    report.add("bad-signature", f"{label}: {exc}")
        if previous is not None:
            if cp.prev != previous.body_hash():
                report.add("inconsistent", f"{label} does not name the checkpoint before it")
            if cp.size < previous.size:
                report.add("inconsistent", f"{label} is smaller than the checkpoint before it")
        previous = cp


def check_roots(report: Report, tree: Tree, checkpoints: Sequence[Checkpoint], what: str) -> None:
    """Every checkpoint's root against the tree rebuilt from the entries themselves."""
    for number, cp in enumerate(checkpoints):
        if cp.size > len(tree):
            report.add(
                "truncated",
                f"checkpoint {number} signed {cp.size} entries but {what} has {len(tree)}",
                len(tree),
            )
        elif tree.root(cp.size) != cp.root:
            report.add(
                "edited",
                f"the first {cp.size} entries do not have checkpoint {number}'s signed root",
            )


def check_against(
    report: Report, tree: Tree | None, latest: Checkpoint | None, kept: Checkpoint, where: str
) -> None:
    """A checkpoint kept elsewhere (witness, earlier archive) must be covered by this log."""
    if tree is not None:
        if kept.size > len(tree):
            report.add(
                "rolled-back", f"{where} signed {kept.size} entries; the log has {len(tree)}"
            )
        elif tree.root(kept.size) != kept.root:
            report.add("rolled-back", f"the log's first {kept.size} entries differ from {where}")
        return
    if latest is None or kept.size > latest.size:
        report.add("rolled-back", f"{where} is ahead of this log's latest checkpoint")


def check_consistency(
    report: Report, earlier: Checkpoint, later: Checkpoint, proof: Sequence[bytes], label: str
) -> None:
    if earlier.size == 0:
        if earlier.root != EMPTY_ROOT:
            report.add("inconsistent", f"{label} has size 0 but not the empty root")
        return
    try:
        verify_consistency(earlier.size, later.size, proof, earlier.root, later.root)
    except ProofError as exc:
        report.add("inconsistent", f"{label} is not consistent with the latest checkpoint: {exc}")


def check_inclusion(
    report: Report, entry_leaf: bytes, seq: int, cp: Checkpoint, proof: Sequence[bytes]
) -> None:
    try:
        _verify_inclusion(entry_leaf, seq, cp.size, proof, cp.root)
    except ProofError as exc:
        report.add("not-in-log", f"not in the tree of the signed checkpoint: {exc}", seq)


def check_signoff(
    report: Report,
    cp: Checkpoint,
    sig: NoteSignature,
    public: Ed25519PublicKey | None,
    roles: frozenset[str],
) -> None:
    if public is None:
        report.add("forged-signoff", f"the signoff by {sig.name} names no registered key")
        return
    try:
        cp.verify_signature(sig, public, SIGNOFF_PURPOSE)
    except CheckpointError as exc:
        report.add("forged-signoff", f"the signoff by {sig.name}: {exc}")
        return
    if "compliance" not in roles:
        report.add("forged-signoff", f"{sig.name} did not hold the compliance role")
        return
    report.signoffs.append(sig.name)
