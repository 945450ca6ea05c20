"""RFC 9162 (RFC 6962) Merkle tree: leaf and node hashes, roots, inclusion and consistency proofs.

Written here rather than imported because the only Python implementation on the package index
is GPL-licensed. It is small, follows the RFC's own algorithms (section 2.1) line for line, and
is checked against transparency-dev/merkle's published vectors, mutated proofs included
(tests/audit/vectors/). Hashes are SHA-256 and raw 32-byte values throughout.

`Tree` keeps every level of the complete, aligned subtrees, so that it is built with n - 1 node
hashes and then answers any root, inclusion or consistency proof for any size <= n in
O(log n) hashes: every RFC 6962 subtree is either such a complete subtree or a right edge,
whose hash is found by splitting at the largest power of two, as the RFC does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "ProofError",
    "Tree",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]


class ProofError(Exception):
    """A proof, size or root does not verify; the message says which check failed."""


EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_hashes(what: str, *hashes: bytes) -> None:
    if any(len(h) != 32 for h in hashes):
        raise ProofError(f"{what} must be 32-byte SHA-256 hashes")


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """An append-only tree over leaf hashes, answering proofs for every size up to its own."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()):
        row = list(leaf_hashes)
        self._levels: list[list[bytes]] = [row]
        while len(row) > 1:  # built level by level: n - 1 hashes, no per-leaf bookkeeping
            sha = hashlib.sha256
            row = [sha(b"\x01" + a + b).digest() for a, b in zip(row[::2], row[1::2], strict=False)]
            self._levels.append(row)

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> Tree:
        return cls(leaf_hash(d) for d in leaves)

    def __len__(self) -> int:
        return len(self._levels[0])

    def append_hash(self, h: bytes) -> None:
        self._levels[0].append(h)
        level = 0
        # Completing a pair at one level completes a node at the next one up.
        while len(self._levels[level]) % 2 == 0:
            row = self._levels[level]
            parent = node_hash(row[-2], row[-1])
            level += 1
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(parent)

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def _hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for lo aligned to the largest power of two <= hi - lo."""
        n = hi - lo
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self._levels[level][lo >> level]
        k = _split(n)
        return node_hash(self._hash(lo, lo + k), self._hash(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = len(self) if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[0:size]) of RFC 9162 section 2.1.3.1."""
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf {index} is not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return self._path(m, lo, lo + k) + [self._hash(lo + k, hi)]
        return self._path(m - k, lo + k, hi) + [self._hash(lo, lo + k)]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(m, D[0:n]) of RFC 9162 section 2.1.4.1."""
        size2 = len(self) if size2 is None else size2
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise ProofError(f"no consistency proof from size {size1} to size {size2}")
        if size1 == size2:
            return []
        return self._subproof(size1, 0, size2, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self._hash(lo, hi)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, complete) + [self._hash(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self._hash(lo, lo + k)]

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise ProofError(f"the tree has {len(self)} leaves, not {size}")


class Frontier:
    """The right edge of a tree: one hash per set bit of its size, enough to append and root.

    The log keeps this (at most 64 hashes) beside its head, so a checkpoint's root costs
    O(log n) hashes however long the log is, and each append one leaf and on average one node.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()):
        if len(hashes) != bin(size).count("1"):
            raise ProofError(f"a frontier of size {size} has {bin(size).count('1')} hashes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, h: bytes) -> None:
        self.hashes.append(h)
        self.size += 1
        n = self.size
        while n & 1 == 0:  # two equal complete subtrees merge into one
            right = self.hashes.pop()
            self.hashes[-1] = node_hash(self.hashes[-1], right)
            n >>= 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def encode(self) -> str:
        return "".join(h.hex() for h in self.hashes)

    @classmethod
    def decode(cls, size: int, text: str) -> Frontier:
        raw = bytes.fromhex(text)
        return cls(size, [raw[i : i + 32] for i in range(0, len(raw), 32)])


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    return Tree(hashes).root()


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2: raise ProofError unless `leaf` (a leaf hash) is at `index`."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes("the leaf, the root and the proof", leaf, root, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 section 2.1.4.2: raise ProofError unless tree `size2` extends tree `size1`.

    As in transparency-dev/merkle, a proof from the empty tree is refused: it proves nothing
    (every tree extends the empty one), so callers check that case themselves.
    """
    if size2 < size1:
        raise ProofError(f"size {size2} is smaller than the earlier size {size1}")
    _check_hashes("the proof", *proof)
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # an exact power of two: the old root is itself a node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != root1:
        raise ProofError("the consistency proof does not lead to the earlier root")
    if sr != root2:
        raise ProofError("the consistency proof does not lead to the later root")
