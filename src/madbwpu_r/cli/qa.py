"""`madbwpu-r qa signoff / reject`: signed QA decisions bound to one release id."""

from __future__ import annotations

import typer

from madbwpu_r.cli._release_common import As, console, refusals, releases
from madbwpu_r.cli.options import DEFAULT_DIR, DataDir

app = typer.Typer(help="QA signs off or rejects a release.", no_args_is_help=True)


@app.command()
def signoff(
    release: str, actor: As, note: str = typer.Option("", "--note"), data_dir: DataDir = DEFAULT_DIR
) -> None:
    """Sign off RELEASE as a qa identity (triggers a deploy waiting for it)."""
    with refusals():
        d = releases(data_dir).decide(release, actor, "signoff", note)
    console.print(f"QA signoff of {d.release_id[:16]} by {d.signer!r} recorded")


@app.command()
def reject(
    release: str, actor: As, note: str = typer.Option("", "--note"), data_dir: DataDir = DEFAULT_DIR
) -> None:
    """Reject RELEASE as a qa identity; a deploy of it stops."""
    with refusals():
        d = releases(data_dir).decide(release, actor, "rejection", note)
    console.print(f"QA rejection of {d.release_id[:16]} by {d.signer!r} recorded")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="qa")
