"""Options every command that works on a project's data shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from madbwpu_r.config import DATA_DIR_ENV, DEFAULT_DATA_DIR, ENVIRONMENTS

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar=DATA_DIR_ENV,
        help=f"The project's data directory (default: ${DATA_DIR_ENV}, else ./{DEFAULT_DATA_DIR}).",
        show_default=False,
    ),
]
DEFAULT_DIR = Path(DEFAULT_DATA_DIR)


def check_env(value: str) -> str:
    if value not in ENVIRONMENTS:
        raise typer.BadParameter(
            f"{value!r} is not an environment; use one of: {', '.join(ENVIRONMENTS)}"
        )
    return value


Env = Annotated[
    str,
    typer.Option("--env", help="Environment: staging or production.", callback=check_env),
]


def split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8000)")
    return host or "127.0.0.1", int(port)


StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        envvar="MADBWPU_R_STORE_URL",
        help="Metadata store URL: sqlite:///PATH or postgresql://USER@HOST/DB?schema=S "
        "(default: the environment's SQLite file).",
    ),
]
"""One environment's metadata store (its audit log lives there too), as `api` takes it."""

BlobUrl = Annotated[
    str | None,
    typer.Option(
        "--blob-url",
        envvar="MADBWPU_R_BLOB_URL",
        help="Blob store for uploads and version files: file:///DIR or s3://BUCKET/PREFIX "
        "(default: file://DIR/<env>/blobs).",
    ),
]
"""One environment's blob store, as `api` and `worker` take it."""
