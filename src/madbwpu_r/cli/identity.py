"""`madbwpu-r init` and `madbwpu-r identity ...`: who may act, with which key and roles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from madbwpu_r.audit.layout import project_missing
from madbwpu_r.cli.acting import As, KeyFile, acting_key, fail
from madbwpu_r.cli.options import DEFAULT_DIR, DataDir
from madbwpu_r.identity.acts import ActError, make_act
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.identity.keyring import Keyring, KeyringError, check_name
from madbwpu_r.identity.roles import ROLES, RoleError, check_roles
from madbwpu_r.identity.setup import init_project, open_directory
from madbwpu_r.signing import SignatureError, public_key_from_b64, public_key_to_b64

__all__ = ["register", "require_project"]

identity_app = typer.Typer(
    name="identity",
    help=(
        "Register identities (people and services) with their Ed25519 public keys and roles. "
        f"Roles: {', '.join(ROLES)}. Every change is an act signed by an admin and audited."
    ),
    no_args_is_help=True,
)

Roles = Annotated[
    list[str],
    typer.Option("--role", help=f"A role (repeat for several): {', '.join(ROLES)}."),
]


def require_project(data_dir: Path) -> None:
    if project_missing(data_dir):
        raise _no_identities(data_dir)


def _no_identities(data_dir: Path) -> typer.Exit:
    return fail(f"{data_dir} has no identities yet: run `madbwpu-r init --data-dir {data_dir}`")


@contextmanager
def _directory(data_dir: Path) -> Iterator[IdentityDirectory]:
    require_project(data_dir)
    directory = open_directory(data_dir)
    try:
        if directory.empty():  # a project store on a server that `init` never filled
            raise _no_identities(data_dir)
        yield directory
    finally:
        directory.db.close()


def init(
    data_dir: DataDir = DEFAULT_DIR,
    admin: Annotated[str, typer.Option(help="Name of the admin identity to create.")] = "admin",
) -> None:
    """Create the project's admin identity and the audit service's signing key.

    Keys go to DIR/keys/ (mode 0700, files 0600). Safe to run again: what exists is kept.
    """
    try:
        result = init_project(data_dir, check_name(admin))
    except (KeyringError, ActError) as exc:
        raise fail(str(exc)) from None
    if result.created:
        typer.echo(f"initialised {data_dir}: " + ", ".join(result.created))
    else:
        typer.echo(f"{data_dir} was already initialised (admin: {result.admin})")
    from madbwpu_r.cli.release import init_example_project

    init_example_project(data_dir)


def _public_key(text: str) -> str:
    """A base64 raw key or a PEM public key file's path."""
    path = Path(text)
    if path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except ValueError:
            raise fail(f"{path} is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise fail(f"{path} is not an Ed25519 public key")
        return public_key_to_b64(key)
    try:
        return public_key_to_b64(public_key_from_b64(text))
    except SignatureError:
        raise fail("--public-key is neither a PEM file nor a base64 Ed25519 key") from None


def _act(data_dir: Path, actor: str, key_file: Path | None, kind: str, name: str,
         roles: list[str], public_key: str | None = None) -> None:  # fmt: skip
    with _directory(data_dir) as directory:
        key = acting_key(data_dir, directory, actor, key_file)
        try:
            directory.apply(make_act(key, kind, name, roles, public_key))
        except (ActError, RoleError) as exc:
            raise fail(str(exc)) from None


@identity_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The new identity's name.")],
    role: Roles,
    actor: As,
    data_dir: DataDir = DEFAULT_DIR,
    key_file: KeyFile = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            help="Its public key (PEM file or base64); without it a key pair is made in DIR/keys/."
        ),
    ] = None,
) -> None:
    """Register an identity with one or more roles (an admin's signed, audited act)."""
    try:
        check_name(name)
        check_roles(role)
    except (KeyringError, RoleError) as exc:
        raise fail(str(exc)) from None
    keyring = Keyring(data_dir)
    made = False
    if public_key is not None:
        key_b64 = _public_key(public_key)
    elif keyring.exists(name):
        key_b64 = public_key_to_b64(keyring.load(name).public)
    else:
        require_project(data_dir)
        key_b64 = public_key_to_b64(keyring.create(name).public)
        made = True
    try:
        _act(data_dir, actor, key_file, "identity.add", name, role, key_b64)
    except typer.Exit:
        if made:  # nothing was registered: do not leave an orphan private key behind
            keyring.remove(name)
        raise
    where = f" (private key in {keyring.path}/{name}.pem)" if made else ""
    typer.echo(f"registered {name} with roles {', '.join(sorted(role))}{where}")


@identity_app.command("grant")
def grant(
    name: Annotated[str, typer.Argument(help="A registered identity.")],
    role: Roles,
    actor: As,
    data_dir: DataDir = DEFAULT_DIR,
    key_file: KeyFile = None,
) -> None:
    """Grant more roles to a registered identity (an admin's signed, audited act)."""
    _act(data_dir, actor, key_file, "identity.grant", name, role)
    typer.echo(f"granted {', '.join(sorted(role))} to {name}")


@identity_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="A registered identity.")],
    actor: As,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role", help="Revoke only this role (repeat); default: the identity itself."
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DIR,
    key_file: KeyFile = None,
) -> None:
    """Revoke roles of an identity, or the whole identity (its key is no longer accepted)."""
    _act(data_dir, actor, key_file, "identity.revoke", name, role or [])
    typer.echo(f"revoked {', '.join(role) if role else 'identity'} of {name}")


@identity_app.command("list")
def list_(
    data_dir: DataDir = DEFAULT_DIR,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per identity.")] = False,
) -> None:
    """Registered identities: roles, key fingerprints, revoked or not."""
    with _directory(data_dir) as directory:
        members = directory.list()
    if json:
        for m in members:
            typer.echo(orjson.dumps(m.to_json()).decode())
        return
    table = Table(box=box.SIMPLE)
    for column in ("name", "roles", "fingerprint", "state"):
        table.add_column(column)
    for m in members:
        table.add_row(m.name, ", ".join(sorted(m.roles)), m.fingerprint,
                      "revoked" if m.revoked else "active")  # fmt: skip
    Console(width=max(100, os.get_terminal_size(1).columns if os.isatty(1) else 100)).print(table)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.add_typer(identity_app, name="identity")
