"""`madbwpu-r archive list / signoff`: deploy archives waiting for compliance."""

from __future__ import annotations

import typer

from madbwpu_r.cli._release_common import As, console, refusals, releases
from madbwpu_r.cli.options import DEFAULT_DIR, DataDir
from madbwpu_r.release.archive import sign_off, verified_signoff

app = typer.Typer(help="Deploy archives and their compliance signoff.", no_args_is_help=True)


@app.command("list")
def list_(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Every deploy archive and whether compliance signed it off."""
    svc = releases(data_dir)
    for a in svc.store.archives():
        state = (
            f"signed off by {a.signed_off_by}"
            if verified_signoff(svc.store, svc.keys, a.deploy_id)
            else "waiting for compliance"
        )
        console.print(f"{a.deploy_id}  {a.digest[:16]}  {state}  {a.location}")


@app.command()
def signoff(deploy_id: str, actor: As, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Sign off a deploy's archive as a compliance identity."""
    with refusals():
        svc = releases(data_dir)
        try:
            sign_off(svc.store, svc.keys, deploy_id, actor)
        except Exception as exc:
            from madbwpu_r.release.errors import Refused

            if isinstance(exc, Refused):
                raise svc.refuse(actor, "audit.signoff", deploy_id, exc) from None
            raise
    console.print(f"archive of {deploy_id} signed off by {actor!r}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="archive")
