"""`madbwpu-r guardrail create / show / revoke / validate`: signed policies named by token."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from madbwpu_r.cli._release_common import (
    As,
    Kubernetes,
    console,
    err,
    kubernetes_dir,
    refusals,
    releases,
)
from madbwpu_r.cli.options import DEFAULT_DIR, DataDir
from madbwpu_r.release.errors import Refused

app = typer.Typer(help="Guardrail policies: create, show, revoke, validate.", no_args_is_help=True)


@app.command()
def create(
    token: str,
    actor: As,
    policy: Path = typer.Option(..., "--policy", help="The policy file (TOML)."),  # noqa: B008
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Sign the policy in FILE as a security identity and store it under TOKEN."""
    with refusals():
        try:
            text = policy.read_text()
        except OSError as exc:
            raise Refused("no-file", f"cannot read {policy}: {exc.strerror}") from None
        signed = releases(data_dir).create_policy(token, text, actor)
    console.print(
        f"guardrail {token} created, signed by {signed.signer!r} (policy {signed.digest[:12]})"
    )


@app.command()
def show(token: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """The stored policy, its signer and any revocation, as JSON."""
    with refusals():
        svc = releases(data_dir)
        signed = svc.policy(token)
        revs = [r.to_json() for r in svc.store.revocations(token)]
    console.print_json(
        orjson.dumps({**signed.to_json(), "digest": signed.digest, "revocations": revs}).decode()
    )


@app.command()
def revoke(
    token: str,
    actor: As,
    reason: str = typer.Option("", "--reason"),
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Revoke a guardrail with a signed revocation; no deploy passes it afterwards."""
    with refusals():
        releases(data_dir).revoke(token, actor, reason)
    console.print(f"guardrail {token} revoked by {actor!r}")


@app.command()
def validate(
    token: str,
    release: str = typer.Option(..., "--release", help="The release id (or a unique prefix)."),
    to: str = typer.Option("production", "--to", help="The target environment."),
    requester: str = typer.Option("deployer", "--requester", help="Who would request the deploy."),
    kubernetes: Kubernetes = None,
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Print every rule with pass / fail and the reason; exit 1 on any failure."""
    with refusals():
        results = releases(data_dir).validate(
            token, release, to, requester, kubernetes_dir(kubernetes)
        )
    for r in results:
        console.print(f"{'PASS' if r.passed else 'FAIL'}  {r.rule}: {r.reason}")
    if any(not r.passed for r in results):
        err.print(f"guardrail {token}: {sum(not r.passed for r in results)} rule(s) fail")
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="guardrail")
