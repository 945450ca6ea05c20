"""The project's identities as the release pipeline needs them: public keys, roles, local keys.

A thin adapter over `identity/`: the directory of signed identity acts answers who holds which
role and key (`KeyDirectory`); private keys come from `--key-file`/`$MADBWPU_R_KEY` or the local
keyring (`DIR/keys/`). Identities the release workflow needs are registered by an admin's act.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from madbwpu_r.identity.acts import ActError, make_act
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.identity.keyring import Keyring, KeyringError, check_name, load_signing_key
from madbwpu_r.identity.setup import open_directory
from madbwpu_r.release.errors import Refused
from madbwpu_r.signing import SigningKey, public_key_to_b64

__all__ = ["LocalKeyring", "check_identity_name"]


def check_identity_name(name: str) -> str:
    try:
        return check_name(name)
    except KeyringError as exc:
        raise Refused("bad-identity-name", str(exc)) from None


class LocalKeyring:
    """A `KeyDirectory` over the identity directory, plus the keys of the identities acting here."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self._directory: IdentityDirectory | None = None

    @property
    def directory(self) -> IdentityDirectory:
        if self._directory is None:
            self._directory = open_directory(self.data_dir)
        return self._directory

    def close(self) -> None:
        if self._directory is not None:
            self._directory.db.close()
            self._directory = None

    def public_key(self, name: str) -> Ed25519PublicKey | None:
        return self.directory.public_key(name)

    def roles(self, name: str) -> frozenset[str]:
        return self.directory.roles(name)

    def signing_key(self, name: str) -> SigningKey:
        """The private key `name` acts with; refused unless it is that identity's registered key."""
        check_identity_name(name)
        public = self.public_key(name)
        if public is None:
            raise Refused("unknown-identity", f"{name!r} is not a registered identity")
        try:
            key = load_signing_key(self.data_dir, name)
        except KeyringError as exc:
            raise Refused("no-private-key", f"no key to act as {name!r}: {exc}") from None
        if public_key_to_b64(key.public) != public_key_to_b64(public):
            raise Refused("key-mismatch", f"the key given for {name!r} is not its registered key")
        return key

    def ensure(self, name: str, roles: tuple[str, ...], admin: str = "admin") -> bool:
        """Register `name` with `roles` by an admin's signed act unless it exists; True if made."""
        check_identity_name(name)
        if self.directory.get(name) is not None:
            return False
        keyring = Keyring(self.data_dir)
        key = keyring.load(name) if keyring.exists(name) else keyring.create(name)
        act = make_act(
            self.signing_key(admin), "identity.add", name, list(roles),
            public_key=public_key_to_b64(key.public),
        )  # fmt: skip
        try:
            self.directory.apply(act)
        except ActError as exc:
            raise Refused("identity-refused", str(exc)) from None
        return True
