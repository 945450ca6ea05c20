"""`madbwpu-r ingest`: upload a CSV to an environment's API and follow its job to the end."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from madbwpu_r.api.datasets import DATASET_NAME
from madbwpu_r.cli.options import DEFAULT_DIR, DataDir, Env
from madbwpu_r.config import load_endpoints, load_secrets

console = Console(stderr=True)
CHUNK = 1 << 20


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return body.get("detail") or body.get("title") or response.text
    except ValueError:
        return response.text or response.reason_phrase


def check_name(value: str) -> str:
    if not DATASET_NAME.fullmatch(value):
        raise typer.BadParameter(
            f"{value!r} is not a valid dataset name: use 1-64 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return value


def check_api(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


def check_timeout(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"must be a number of seconds above 0, got {value}")
    return value


def ingest(
    name: Annotated[
        str,
        typer.Argument(help="Dataset name (letters, digits, '_', '.', '-').", callback=check_name),
    ],
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV file with a header line.", exists=True, dir_okay=False, readable=True
        ),
    ],
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    api: Annotated[
        str | None,
        typer.Option(
            help="API URL (default: from DIR/endpoints.json written by `up`).", callback=check_api
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = True,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the job (> 0).", callback=check_timeout)
    ] = 600.0,
) -> None:
    """Ingest FILE as a new immutable version of dataset NAME.

    The file is uploaded to the environment's API, which answers with a job; a worker then
    writes the version. Exits 0 when the job succeeded, 1 when it failed (the error names the
    line of the file at fault), 2 for an invalid option, refused before anything is uploaded.
    """
    try:
        base = api or load_endpoints(data_dir)[env]["api"]
    except (LookupError, OSError) as exc:
        raise _fail(str(exc).strip("'\"")) from None
    try:
        token = load_secrets(data_dir, env)["write_token"]
    except LookupError as exc:
        raise _fail(str(exc)) from None
    size = file.stat().st_size
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        with Progress(*columns, console=console, transient=False) as progress:
            upload = progress.add_task(f"upload {file.name}", total=max(size, 1))

            def chunks() -> Iterator[bytes]:
                with file.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        progress.advance(upload, len(chunk))
                        yield chunk

            try:
                response = client.post(
                    f"/v1/datasets/{name}/ingest",
                    content=chunks(),
                    headers={"Content-Type": "text/csv", "Content-Length": str(size)},
                )
            except httpx.TransportError as exc:
                raise _fail(
                    f"cannot reach the {env} API at {base}: {exc}; is `madbwpu-r up` running?"
                ) from None
            if response.status_code != 202:
                raise _fail(
                    f"the API refused the upload ({response.status_code}): {_problem(response)}"
                )
            accepted = response.json()
            progress.update(upload, completed=max(size, 1))
            console.print(f"job {accepted['job_id']} accepted: {accepted['status_url']}")
            if not wait:
                return
            task = progress.add_task(f"ingest {name}", total=1.0)
            deadline = time.monotonic() + timeout
            while True:
                job = client.get(accepted["status_url"]).json()
                fraction = (job.get("progress") or {}).get("fraction", 0.0)
                progress.update(
                    task, completed=fraction, description=f"ingest {name}: {job['status']}"
                )
                if job["status"] in ("succeeded", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise _fail(f"job {job['id']} still {job['status']} after {timeout:.0f}s")
                time.sleep(0.2)
    if job["status"] == "failed":
        raise _fail(f"ingest of {file} failed: {job.get('error')}")
    console.print(f"[green]dataset {name} is now version {job['version']}[/green]")


def register(app: typer.Typer) -> None:
    app.command()(ingest)
