"""Canonical bytes, digests and Ed25519 signatures: the one place every signed thing goes through.

Identities, audit checkpoints, archives, QA signoffs, guardrail policies and cutover grants are
all signed the same way: a canonical JSON encoding (sorted keys, no whitespace, UTF-8), a
domain-separation label so a signature made for one purpose can never be replayed as another,
and Ed25519 from `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "KeyDirectory",
    "SignatureError",
    "SigningKey",
    "b64decode",
    "b64encode",
    "canonical_json",
    "digest",
    "fingerprint",
    "public_key_from_b64",
    "public_key_to_b64",
    "sign",
    "verify",
]


class SignatureError(Exception):
    """A signature, key or signed document does not verify."""


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace: equal values always give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def digest(data: bytes) -> str:
    """Hex SHA-256, the digest used for every content address in the product."""
    return hashlib.sha256(data).hexdigest()


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise SignatureError(f"not valid base64: {exc}") from None


def public_key_to_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64encode(raw)


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    raw = b64decode(text)
    if len(raw) != 32:
        raise SignatureError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """Short, stable name of a public key: `ed25519:` and 16 hex digits of its SHA-256."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + digest(raw)[:16]


def _message(purpose: str, payload: bytes) -> bytes:
    # Domain separation: "madbwpu-r/<purpose>\n" + payload; a signoff signature can never
    # verify as a grant, a checkpoint or anything else.
    if not purpose or "\n" in purpose:
        raise ValueError("a signing purpose is one non-empty line")
    return b"madbwpu-r/" + purpose.encode() + b"\n" + payload


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key with the name of the identity it belongs to."""

    name: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(name={self.name!r}, fingerprint={self.fingerprint!r})"


def sign(key: SigningKey, purpose: str, payload: bytes) -> str:
    """Base64 Ed25519 signature over the purpose-labelled payload."""
    return b64encode(key.private.sign(_message(purpose, payload)))


def verify(public: Ed25519PublicKey, purpose: str, payload: bytes, signature: str) -> None:
    """Raise SignatureError unless `signature` is `public`'s over this purpose and payload."""
    try:
        public.verify(b64decode(signature), _message(purpose, payload))
    except InvalidSignature:
        raise SignatureError(f"the {purpose} signature does not verify") from None


class KeyDirectory(Protocol):
    """Who is registered, with which public key and roles (implemented by `identity/`)."""

    def public_key(self, name: str) -> Ed25519PublicKey | None: ...

    def roles(self, name: str) -> frozenset[str]: ...
