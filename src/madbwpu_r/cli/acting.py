"""`--as NAME` and `--key-file PATH`: which identity a command acts as, and with which key.

Every command that acts takes these two. The key comes from `--key-file`, else the
`MADBWPU_R_KEY` environment variable (CI), else the local keyring `DIR/keys/`; it must be the
key registered for NAME, so a key file of another identity is refused before anything happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.identity.keyring import KeyringError, load_signing_key
from madbwpu_r.signing import SigningKey, public_key_to_b64

__all__ = ["As", "KeyFile", "acting_key", "fail"]

As = Annotated[
    str,
    typer.Option("--as", help="The registered identity that acts (its key signs the act)."),
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="PEM private key of the --as identity (else $MADBWPU_R_KEY, else DIR/keys/).",
        dir_okay=False,
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def acting_key(
    data_dir: Path, directory: IdentityDirectory, name: str, key_file: Path | None
) -> SigningKey:
    """The key `name` acts with; refuses unknown or revoked identities and foreign keys."""
    registered = directory.public_key(name)
    if registered is None:
        directory.refused(name, "-", "not a registered, unrevoked identity")
        raise fail(f"{name!r} is not a registered identity (see `madbwpu-r identity list`)")
    try:
        key = load_signing_key(data_dir, name, key_file)
    except KeyringError as exc:
        raise fail(str(exc)) from None
    if public_key_to_b64(key.public) != public_key_to_b64(registered):
        directory.refused(name, "-", "the key given is not the one registered for this identity")
        raise fail(f"that key is not the one registered for {name}")
    return key
