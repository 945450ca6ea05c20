"""Signatures are bound to their purpose and payload; keys never print."""

from __future__ import annotations

import pytest

from madbwpu_r.signing import (
    SignatureError,
    SigningKey,
    canonical_json,
    public_key_from_b64,
    public_key_to_b64,
    sign,
    verify,
)


def test_canonical_json_is_order_independent():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert canonical_json({"a": 1}) == b'{"a":1}'


def test_signature_binds_purpose_and_payload():
    key = SigningKey.generate("qa-1")
    sig = sign(key, "signoff", b"release-1")
    verify(key.public, "signoff", b"release-1", sig)
    with pytest.raises(SignatureError):
        verify(key.public, "grant", b"release-1", sig)
    with pytest.raises(SignatureError):
        verify(key.public, "signoff", b"release-2", sig)
    with pytest.raises(SignatureError):
        verify(SigningKey.generate("other").public, "signoff", b"release-1", sig)


def test_public_key_round_trip_and_repr_hides_key():
    key = SigningKey.generate("admin")
    again = public_key_from_b64(public_key_to_b64(key.public))
    verify(again, "x", b"y", sign(key, "x", b"y"))
    assert "private" not in repr(key) and key.fingerprint in repr(key)
    with pytest.raises(SignatureError):
        public_key_from_b64("not base64!")
