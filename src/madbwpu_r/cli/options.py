"""Options every command that works on a project's data shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

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

BodyTimeout = Annotated[
    float,
    typer.Option(
        "--body-timeout",
        min=0.1,
        max=3600.0,
        metavar="SECONDS",
        help="A request body that sends no byte for this long is cut off: 408 and the "
        "connection closed (counted between reads, never over the whole upload).",
    ),
]


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


# The engines' URLs, one option each for every command that takes it (`up` gives each
# environment its own key prefix / schema / bucket prefix under the URL it is given).
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        envvar="MADBWPU_R_STORE_URL",
        help="Metadata store URL: sqlite:///PATH or postgresql://USER@HOST/DB?schema=S "
        "(default: the environment's SQLite file, sqlite:///DIR/<env>/state.sqlite; "
        "`up` takes a postgresql:// URL and gives each environment its own schema).",
        show_default=False,
    ),
]
QueueUrl = Annotated[
    str | None,
    typer.Option(
        "--queue-url",
        envvar="MADBWPU_R_QUEUE_URL",
        help="Job queue URL: sqlite:///PATH, redis://HOST:6379/0?prefix=NAME or "
        "postgresql://USER@HOST/DB?schema=S (default: the environment's SQLite file, "
        "sqlite:///DIR/<env>/state.sqlite; `up` takes a redis:// or postgresql:// URL and "
        "gives each environment its own key prefix / schema).",
        show_default=False,
    ),
]
BlobUrl = Annotated[
    str | None,
    typer.Option(
        "--blob-url",
        envvar="MADBWPU_R_BLOB_URL",
        help="Blob store for uploads and version files: file:///DIR or s3://BUCKET/PREFIX, "
        "endpoint and credentials from the AWS_* settings (default: file://DIR/<env>/blobs; "
        "`up` takes an s3:// URL and gives each environment its own prefix).",
        show_default=False,
    ),
]


def check_redis_url(value: str | None) -> str | None:
    """A pub/sub URL must name Redis: anything else would fail only once processes run."""
    if value and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise typer.BadParameter(f"{value!r} is not a redis:// URL", param_hint="--redis-url")
    return value


RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="MADBWPU_R_REDIS_URL",
        callback=check_redis_url,
        help="Also publish purges over Redis pub/sub on this URL, to the edges subscribed to "
        "it (`up`: one channel per environment).",
        show_default=False,
    ),
]
