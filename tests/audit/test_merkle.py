"""The Merkle module against transparency-dev/merkle's published vectors, and against itself."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from madbwpu_r.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    Tree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "merkle" / "testdata"


def _load(kind: str) -> list[tuple[str, dict]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert len(files) > 50, f"the {kind} vectors are missing from {VECTORS}"
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


def _b(values: list[str] | None) -> list[bytes]:
    return [base64.b64decode(v) for v in values or []]


@pytest.mark.parametrize(
    ("name", "v"), _load("inclusion"), ids=lambda x: x if isinstance(x, str) else ""
)
def test_inclusion_vectors(name: str, v: dict) -> None:
    args = (
        base64.b64decode(v["leafHash"]),
        v["leafIdx"],
        v["treeSize"],
        _b(v["proof"]),
        base64.b64decode(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize(
    ("name", "v"), _load("consistency"), ids=lambda x: x if isinstance(x, str) else ""
)
def test_consistency_vectors(name: str, v: dict) -> None:
    args = (
        v["size1"],
        v["size2"],
        _b(v["proof"]),
        base64.b64decode(v["root1"]),
        base64.b64decode(v["root2"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vectors_include_mutations() -> None:
    wanted = [v for _, v in _load("inclusion") + _load("consistency") if v["wantErr"]]
    assert len(wanted) > 100


# RFC 6962's reference tree: leaves of the transparency-dev tests (section 2.1.5 of RFC 9162).
REFERENCE_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]


def test_generated_proofs_match_the_published_happy_paths() -> None:
    tree = Tree.from_leaves(REFERENCE_LEAVES)
    checked = 0
    for name, v in _load("inclusion"):
        if v["wantErr"] or not name.split("/")[1].isdigit():  # others use other leaves
            continue
        assert tree.root(v["treeSize"]) == base64.b64decode(v["root"])
        assert tree.inclusion_proof(v["leafIdx"], v["treeSize"]) == _b(v["proof"])
        checked += 1
    for name, v in _load("consistency"):
        if v["wantErr"] or not name.split("/")[1].isdigit():
            continue
        assert tree.consistency_proof(v["size1"], v["size2"]) == _b(v["proof"])
        checked += 1
    assert checked >= 5


def test_empty_tree() -> None:
    assert Tree().root() == EMPTY_ROOT
    with pytest.raises(ProofError):
        Tree().inclusion_proof(0)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_every_proof_the_tree_makes_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    tree = Tree.from_leaves(leaves)
    size2 = data.draw(st.integers(1, len(leaves)))
    size1 = data.draw(st.integers(1, size2))
    index = data.draw(st.integers(0, size2 - 1))
    root2 = tree.root(size2)
    assert Tree.from_leaves(leaves[:size2]).root() == root2
    proof = tree.inclusion_proof(index, size2)
    verify_inclusion(leaf_hash(leaves[index]), index, size2, proof, root2)
    verify_consistency(size1, size2, tree.consistency_proof(size1, size2), tree.root(size1), root2)
    if size1 < size2:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, tree.consistency_proof(size1, size2), root2, root2)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[index] + b"x"), index, size2, proof, root2)


@given(st.lists(st.binary(max_size=4), max_size=40))
def test_the_frontier_roots_like_the_tree(leaves: list[bytes]) -> None:
    frontier, tree = Frontier(), Tree()
    for leaf in leaves:
        frontier.append(leaf_hash(leaf))
        tree.append_hash(leaf_hash(leaf))
        assert frontier.root() == tree.root()
        assert Frontier.decode(frontier.size, frontier.encode()).root() == tree.root()
