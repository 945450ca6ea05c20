"""Checkpoint text: round trip, signatures bound to body, key and purpose; malformed text refused."""

from __future__ import annotations

import hashlib

import pytest

from madbwpu_r.audit.checkpoint import (
    CHECKPOINT_PURPOSE,
    SIGNOFF_PURPOSE,
    Checkpoint,
    CheckpointError,
)
from madbwpu_r.signing import SigningKey

ROOT = hashlib.sha256(b"root").digest()


def _cp(**kw: object) -> Checkpoint:
    values = {"origin": "madbwpu-r/test", "size": 7, "root": ROOT, "time": 1_800_000_000.25}
    values.update(kw)
    return Checkpoint(**values)  # type: ignore[arg-type]


def test_round_trip_and_layout() -> None:
    key = SigningKey.generate("audit-service")
    cp = _cp(prev=hashlib.sha256(b"p").digest()).signed(key)
    text = cp.text()
    lines = text.split("\n")
    assert lines[:3] == ["madbwpu-r/test", "7", cp.body().split("\n")[2]]
    assert lines[3].startswith("time 2027-01-15T")
    assert lines[4].startswith("prev ")
    assert lines[5] == ""
    assert lines[6].startswith("\u2014 audit-service ")
    parsed = Checkpoint.parse(text)
    assert parsed == cp
    parsed.verify_signature(parsed.signatures[0], key.public, CHECKPOINT_PURPOSE)


def test_signature_is_bound_to_body_key_and_purpose() -> None:
    key, other = SigningKey.generate("audit-service"), SigningKey.generate("audit-service")
    cp = _cp().signed(key)
    sig = cp.signatures[0]
    with pytest.raises(CheckpointError, match="another key"):
        cp.verify_signature(sig, other.public, CHECKPOINT_PURPOSE)
    with pytest.raises(CheckpointError, match="does not verify"):
        cp.verify_signature(sig, key.public, SIGNOFF_PURPOSE)
    edited = Checkpoint.parse(cp.text().replace("\n7\n", "\n8\n"))
    with pytest.raises(CheckpointError, match="does not verify"):
        edited.verify_signature(edited.signatures[0], key.public, CHECKPOINT_PURPOSE)


def test_cosignature_keeps_the_body_hash() -> None:
    cp = _cp().signed(SigningKey.generate("audit-service"))
    cosigned = cp.signed(SigningKey.generate("carol"), SIGNOFF_PURPOSE)
    assert cosigned.body_hash() == cp.body_hash()
    assert [s.name for s in Checkpoint.parse(cosigned.text()).signatures] == [
        "audit-service",
        "carol",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n7\n",
        "origin\n07\nAAAA\ntime x\n\n",
        "origin\nseven\n" + "A" * 44 + "\ntime 2026-01-01T00:00:00.000000Z\n\n",
        "origin\n7\nnot base64!\ntime 2026-01-01T00:00:00.000000Z\n\n",
        "origin\n7\n" + "A" * 44 + "\n\n",
        "origin\n7\n" + "A" * 44 + "\ntime 2026-01-01T00:00:00.000000Z\nextra line\n\n",
        "origin\n7\n" + "A" * 44 + "\ntime 2026-01-01T00:00:00.000000Z\n\nno dash\n",
    ],
)
def test_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)
