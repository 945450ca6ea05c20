"""`madbwpu-r release cut / list / show / diff`: immutable manifests cut from staging."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import typer
from rich.table import Table

from madbwpu_r.cli._release_common import As, console, refusals, releases
from madbwpu_r.cli.options import DEFAULT_DIR, DataDir, Env
from madbwpu_r.guardrail.example import SEED_TOKEN
from madbwpu_r.release.manifest import diff as manifest_diff

app = typer.Typer(
    help="Cut, list, show and compare releases (immutable manifests).", no_args_is_help=True
)


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command()
def cut(actor: As, env: Env = "staging", data_dir: DataDir = DEFAULT_DIR) -> None:
    """Freeze staging's current dataset versions into a release; prints its id."""
    with refusals():
        manifest, new = releases(data_dir).cut(env, actor)
    console.print(f"{'cut' if new else 'already cut'} release {manifest.release_id}")
    for d in manifest.datasets:
        console.print(f"  {d.name}: {d.row_count} rows, version {d.digest[:12]}")


@app.command("list")
def list_(data_dir: DataDir = DEFAULT_DIR, json: bool = typer.Option(False, "--json")) -> None:
    """Every release, oldest first, with its QA decisions."""
    svc = releases(data_dir)
    items = svc.store.releases()
    if json:
        console.print_json(
            orjson.dumps([m.to_json() | {"release_id": m.release_id} for m in items]).decode()
        )
        return
    table = Table("release", "cut at", "by", "datasets", "QA")
    for m in items:
        qa = ", ".join(f"{d.kind} by {d.signer}" for d in svc.store.decisions(m.release_id)) or "-"
        table.add_row(m.release_id[:16], when(m.cut_at), m.cut_by, str(len(m.datasets)), qa)
    console.print(table)


@app.command()
def show(release: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """The manifest of one release (id or unique prefix) as JSON."""
    with refusals():
        m = releases(data_dir).resolve(release)
    console.print_json(orjson.dumps({"release_id": m.release_id, **m.to_json()}).decode())


@app.command()
def diff(release1: str, release2: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Datasets added, removed and changed from RELEASE1 to RELEASE2, with row counts."""
    with refusals():
        svc = releases(data_dir)
        d = manifest_diff(svc.resolve(release1), svc.resolve(release2))
    for e in d.added:
        console.print(f"+ {e.name}: {e.row_count} rows")
    for e in d.removed:
        console.print(f"- {e.name}: {e.row_count} rows")
    for c in d.changed:
        console.print(
            f"~ {c.name}: {c.old.row_count} -> {c.new.row_count} rows ({c.old.digest[:12]} -> {c.new.digest[:12]})"
        )
    if not d.touched:
        console.print("no dataset differs")


def init_example_project(data_dir) -> None:
    """`init`'s release part: the workflow's identities and the seed's guardrail, said aloud."""
    with refusals(), releases(data_dir) as svc:
        said = svc.init()
    for line in said:
        console.print(line)
    if not said:
        console.print(f"guardrail {SEED_TOKEN} and the release identities already exist")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="release")
