"""Signed checkpoints: the log's size and Merkle root at a time, in C2SP signed-note form.

A checkpoint is what anyone keeps to detect a rewritten or deleted tail later: any future state
of the log must prove consistency with it. The text follows the C2SP `tlog-checkpoint` and
`signed-note` formats so that it is readable by people and by tools of that family:

    madbwpu-r/production            origin: names the log
    1234                            tree size, decimal
    <base64 root>                   RFC 9162 Merkle root of the first 1234 entries
    time 2026-12-01T19:44:37.123456Z
    prev <base64 SHA-256 of the previous checkpoint's body>   (absent for the first one)
                                    blank line ends the body
    — audit-service <base64(key id[4] + Ed25519 signature[64])>
    — alice <base64(...)>           co-signatures (compliance signoff) follow

Key id is C2SP's: the first 4 bytes of SHA-256(name + "\\n" + 0x01 + raw public key). The
signature is `signing.sign` over the body, so it is purpose-bound (`checkpoint` for the log's
own key, `audit-signoff` for a compliance co-signature) and cannot be replayed as any other
signed document of the product; a generic note verifier therefore does not accept it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from madbwpu_r.signing import SignatureError, SigningKey, b64decode, b64encode, sign, verify

__all__ = [
    "CHECKPOINT_PURPOSE",
    "SIGNOFF_PURPOSE",
    "Checkpoint",
    "CheckpointError",
    "NoteSignature",
    "key_id",
]

CHECKPOINT_PURPOSE = "checkpoint"
SIGNOFF_PURPOSE = "audit-signoff"
_DASH = "\u2014 "


class CheckpointError(ValueError):
    """A checkpoint text is malformed, or one of its signatures does not verify."""


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: str  # base64 Ed25519 signature, as `signing.sign` returns it

    def line(self) -> str:
        return f"{_DASH}{self.name} {b64encode(self.key_id + b64decode(self.signature))}\n"


def _format_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise CheckpointError(f"bad time {text!r}") from None


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: float
    prev: bytes | None = None  # SHA-256 of the previous checkpoint's body
    signatures: tuple[NoteSignature, ...] = field(default=())

    def body(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            b64encode(self.root),
            f"time {_format_time(self.time)}",
        ]
        if self.prev is not None:
            lines.append(f"prev {b64encode(self.prev)}")
        return "\n".join(lines) + "\n"

    def body_hash(self) -> bytes:
        """What the next checkpoint's `prev` line names: signatures added later do not change it."""
        return hashlib.sha256(self.body().encode()).digest()

    def text(self) -> str:
        return self.body() + "\n" + "".join(s.line() for s in self.signatures)

    def signed(self, key: SigningKey, purpose: str = CHECKPOINT_PURPOSE) -> Checkpoint:
        sig = NoteSignature(
            key.name, key_id(key.name, key.public), sign(key, purpose, self.body().encode())
        )
        return replace(self, signatures=(*self.signatures, sig))

    def signatures_by(self, name: str) -> list[NoteSignature]:
        return [s for s in self.signatures if s.name == name]

    def verify_signature(self, sig: NoteSignature, public: Ed25519PublicKey, purpose: str) -> None:
        """Raise CheckpointError unless `sig` is `public`'s over this body for `purpose`."""
        if sig.key_id != key_id(sig.name, public):
            raise CheckpointError(f"the signature by {sig.name} names another key")
        try:
            verify(public, purpose, self.body().encode(), sig.signature)
        except SignatureError:
            raise CheckpointError(f"the signature by {sig.name} does not verify") from None

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        body, sep, sigs = text.partition("\n\n")
        if not sep:
            raise CheckpointError("a checkpoint needs a blank line between body and signatures")
        lines = body.split("\n")
        if len(lines) < 4:
            raise CheckpointError("a checkpoint body has origin, size, root and time lines")
        origin, size_text, root_text, *extensions = lines
        if not origin or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
            raise CheckpointError("bad origin or tree size line")
        try:
            root = b64decode(root_text)
        except SignatureError:
            raise CheckpointError("the root line is not base64") from None
        if len(root) != 32:
            raise CheckpointError("the root is not a 32-byte hash")
        time, prev = None, None
        for line in extensions:
            word, _, value = line.partition(" ")
            if word == "time" and time is None:
                time = _parse_time(value)
            elif word == "prev" and prev is None:
                try:
                    prev = b64decode(value)
                except SignatureError:
                    raise CheckpointError("the prev line is not base64") from None
            else:
                raise CheckpointError(f"unexpected checkpoint line {line!r}")
        if time is None:
            raise CheckpointError("a checkpoint needs a time line")
        signatures = []
        for line in sigs.split("\n"):
            if not line:
                continue
            if not line.startswith(_DASH):
                raise CheckpointError(f"bad signature line {line!r}")
            name, _, blob_text = line[len(_DASH) :].rpartition(" ")
            try:
                blob = b64decode(blob_text)
            except SignatureError:
                raise CheckpointError(f"bad signature by {name}") from None
            if not name or len(blob) != 68:
                raise CheckpointError(f"bad signature line {line!r}")
            signatures.append(NoteSignature(name, blob[:4], b64encode(blob[4:])))
        cp = cls(origin, int(size_text), root, time, prev, tuple(signatures))
        if cp.body() != body + "\n":
            raise CheckpointError("the checkpoint body is not in canonical form")
        return cp
