"""Private keys: the local keyring under the data directory, a key file, or an environment variable.

The keyring is `DIR/keys/` (mode 0700) with one PKCS#8 PEM file per identity (mode 0600,
created exclusively, never rewritten). A key never goes on a command line, into a log line or
into the audit trail: commands take `--key-file PATH` or the `MADBWPU_R_KEY` environment variable
(a PEM, for CI secrets) when the key is not in the local keyring.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from madbwpu_r.signing import SigningKey

__all__ = ["KEY_ENV", "KeyringError", "Keyring", "check_name", "load_signing_key"]

KEY_ENV = "MADBWPU_R_KEY"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class KeyringError(Exception):
    """No usable private key for an identity (missing, unreadable, or not Ed25519)."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise KeyringError(
            f"{name!r} is not an identity name: lowercase letters, digits, '-' and '_', "
            "starting with a letter, at most 63 characters"
        )
    return name


def _parse_pem(name: str, data: bytes, where: str) -> SigningKey:
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyringError(f"{where} does not hold an unencrypted PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyringError(f"{where} does not hold an Ed25519 key")
    return SigningKey(name, private)


def _pem(key: SigningKey) -> bytes:
    return key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Keyring:
    """`DIR/keys/NAME.pem`: the private keys of the identities that act on this machine."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "keys"

    def _file(self, name: str) -> Path:
        return self.path / f"{check_name(name)}.pem"

    def exists(self, name: str) -> bool:
        return self._file(name).exists()

    def create(self, name: str) -> SigningKey:
        """A new key pair for `name`; refuses to replace an existing one."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        key = SigningKey.generate(check_name(name))
        try:
            fd = os.open(self._file(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyringError(f"the keyring already holds a key for {name}") from None
        with os.fdopen(fd, "wb") as f:
            f.write(_pem(key))
            f.flush()
            os.fsync(f.fileno())
        return key

    def load(self, name: str) -> SigningKey:
        path = self._file(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(
                f"no key for {name} in {self.path}: pass --key-file or set {KEY_ENV}"
            ) from None
        return _parse_pem(name, data, str(path))

    def remove(self, name: str) -> None:
        self._file(name).unlink(missing_ok=True)


def load_signing_key(
    data_dir: Path, name: str, key_file: Path | None = None, env: dict[str, str] | None = None
) -> SigningKey:
    """The key `name` acts with: `--key-file`, else `$MADBWPU_R_KEY`, else the local keyring."""
    env = dict(os.environ) if env is None else env
    if key_file is not None:
        try:
            return _parse_pem(name, Path(key_file).read_bytes(), str(key_file))
        except OSError as exc:
            raise KeyringError(f"cannot read {key_file}: {exc.strerror}") from None
    if env.get(KEY_ENV):
        return _parse_pem(name, env[KEY_ENV].encode(), f"${KEY_ENV}")
    return Keyring(data_dir).load(name)


def export_pem(key: SigningKey) -> bytes:
    """The PEM of a key, for `identity add --export-key-to PATH` (written 0600 by the caller)."""
    return _pem(key)
