"""An in-memory key directory for domain tests: names, public keys and roles."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from madbwpu_r.signing import SigningKey


class Directory:
    def __init__(self) -> None:
        self.keys: dict[str, SigningKey] = {}
        self._roles: dict[str, frozenset[str]] = {}

    def add(self, name: str, *roles: str) -> SigningKey:
        key = SigningKey.generate(name)
        self.keys[name] = key
        self._roles[name] = frozenset(roles)
        return key

    def public_key(self, name: str) -> Ed25519PublicKey | None:
        key = self.keys.get(name)
        return key.public if key else None

    def roles(self, name: str) -> frozenset[str]:
        return self._roles.get(name, frozenset())
