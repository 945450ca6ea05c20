"""Commands that run the tiers: `up` (everything), `api` and `worker` (one process each)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from madbwpu_r.body_timeout import DEFAULT_BODY_TIMEOUT
from madbwpu_r.cli.edge import parse_size
from madbwpu_r.cli.options import (
    DEFAULT_DIR,
    BlobUrl,
    BodyTimeout,
    DataDir,
    Env,
    QueueUrl,
    RedisUrl,
    StoreUrl,
    split_listen,
)
from madbwpu_r.config import EnvPaths, ensure_data_dir, load_or_create_secrets
from madbwpu_r.logs import configure_logging
from madbwpu_r.stopsignals import StopSignals

if TYPE_CHECKING:
    from madbwpu_r.launcher import Stack
    from madbwpu_r.queue import Queue
    from madbwpu_r.worker.health import HealthServer
    from madbwpu_r.worker.runner import Worker

console = Console(stderr=True)

DEFAULT_MAX_UPLOAD = "1GiB"
MaxUpload = Annotated[
    str,
    typer.Option(
        help="Largest ingest body the API accepts (e.g. 512MiB); larger ones get 413, "
        "before the body is read when Content-Length says so.",
        callback=lambda value: parse_size(value) and value,
    ),
]


def _check_public_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise typer.BadParameter(
            f"{value!r} is not an http(s) base URL such as https://data.example"
        )
    return value.rstrip("/")


def up(
    data_dir: DataDir = DEFAULT_DIR,
    host: Annotated[str, typer.Option(help="Address every tier listens on.")] = "127.0.0.1",
    min_workers: Annotated[int, typer.Option(help="Workers kept per environment when idle.")] = 1,
    max_workers: Annotated[int, typer.Option(help="Most workers per environment under load.")] = 4,
    worker_cooldown: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds the queue must want fewer workers before the surplus is stopped.",
        ),
    ] = 30.0,
    edges: Annotated[
        int,
        typer.Option(
            min=1, max=16, help="Edge processes per environment; every one gets every purge."
        ),
    ] = 1,
    apis: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="API processes per environment; each edge balances its misses over all of them.",
        ),
    ] = 1,
    queue_url: QueueUrl = None,
    store_url: StoreUrl = None,
    blob_url: BlobUrl = None,
    redis_url: RedisUrl = None,
    max_upload_bytes: MaxUpload = DEFAULT_MAX_UPLOAD,
    body_timeout: BodyTimeout = DEFAULT_BODY_TIMEOUT,
) -> None:
    """Start staging and production: an edge, an API and workers each, on embedded defaults.

    Prints the URLs and writes them to DIR/endpoints.json. Ctrl-C or SIGTERM stops every
    process cleanly; running `up` again on the same DIR keeps all data (and the same ports
    where they are free).
    """
    from madbwpu_r.launcher import Stack

    configure_logging("up")
    try:
        Stack.refuse_given_secrets()
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    ensure_data_dir(data_dir)  # 0700, before anything is written into it
    _init_project(data_dir)
    stack = Stack(
        data_dir,
        host=host,
        min_workers=min_workers,
        max_workers=max_workers,
        worker_cooldown=worker_cooldown,
        edges=edges,
        apis=apis,
        queue_url=queue_url,
        store_url=store_url,
        blob_url=blob_url,
        redis_url=redis_url,
        max_upload_bytes=parse_size(max_upload_bytes),
        body_timeout=body_timeout,
    )
    with StopSignals(lambda signum: stack.request_stop()):
        try:
            stack.start()
            stack.wait_ready()
            if not stack.stopping:
                _print_endpoints(stack, data_dir)
                stack.watch()
        except (RuntimeError, TimeoutError, OSError, ValueError, LookupError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            stack.stop()
            raise typer.Exit(1) from None
        console.print("stopping...")
        stack.stop()


def _init_project(data_dir: Path) -> None:
    """`init` on every start (it keeps what exists): a new data dir gets its identities and
    logs, one whose `init` was cut short is completed, and one that lost the audit service's
    key is refused, since no process could sign the logs' checkpoints."""
    from madbwpu_r.identity.acts import ActError
    from madbwpu_r.identity.keyring import KeyringError
    from madbwpu_r.identity.setup import init_project

    try:
        init_project(data_dir)
    except (KeyringError, ActError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _print_endpoints(stack: Stack, data_dir: Path) -> None:
    table = Table(title=f"madbwpu-r is up ({data_dir})")
    for column in ("environment", "edge (read here)", "api"):
        table.add_column(column)
    for env, urls in stack.endpoints.items():
        api_list = "\n".join(urls.get("apis") or [urls["api"]])
        table.add_row(env, "\n".join(urls.get("edges") or [urls["edge"]]), api_list)
    Console().print(table)
    console.print(f"endpoints written to {data_dir / 'endpoints.json'}; Ctrl-C stops everything")


def api(
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "127.0.0.1:8000",
    edge: Annotated[
        list[str] | None,
        typer.Option(help="An edge URL to purge on data changes (repeat for each edge)."),
    ] = None,
    queue_url: QueueUrl = None,
    store_url: StoreUrl = None,
    blob_url: BlobUrl = None,
    redis_url: RedisUrl = None,
    redis_channel: Annotated[
        str, typer.Option(help="Pub/sub channel of the purges.")
    ] = "madbwpu-r:edge:purge",
    retention: Annotated[
        float,
        typer.Option(
            envvar="MADBWPU_R_RETENTION",
            min=0,
            help="Seconds after which succeeded jobs, ended ingests' uploads and delivered "
            "outbox rows are swept (version files are kept).",
        ),
    ] = 7 * 24 * 3600.0,
    max_upload_bytes: MaxUpload = DEFAULT_MAX_UPLOAD,
    body_timeout: BodyTimeout = DEFAULT_BODY_TIMEOUT,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="Base URL clients reach this API by (e.g. its edge); links it gives out "
            "(status_url, Location) are built on it. Default: relative links.",
            callback=_check_public_url,
        ),
    ] = None,
) -> None:
    """Run one API process for an environment."""
    import uvicorn

    from madbwpu_r.api.app import create_app
    from madbwpu_r.api.protocol import ProblemHttpToolsProtocol
    from madbwpu_r.api.state import ApiSettings
    from madbwpu_r.blobs import BlobStoreError
    from madbwpu_r.body_timeout import with_body_timeout
    from madbwpu_r.purge import PurgeError
    from madbwpu_r.queue import QueueError
    from madbwpu_r.store import StoreError

    configure_logging(f"{env}-api")
    host, port = split_listen(listen)
    secrets = load_or_create_secrets(data_dir, env)
    settings = ApiSettings(
        env=env,
        data_dir=data_dir.resolve(),
        write_token=secrets["write_token"],
        worker_token=secrets["worker_token"],
        purge_token=secrets["purge_token"],
        queue_url=queue_url,
        store_url=store_url,
        blob_url=blob_url,
        edges=list(edge or []),
        redis_url=redis_url,
        redis_channel=redis_channel,
        retention=retention,
        max_upload_bytes=parse_size(max_upload_bytes),
        public_url=public_url,
    )
    try:
        app = create_app(settings)
    except (StoreError, QueueError, BlobStoreError, PurgeError) as exc:
        console.print(f"[red]error:[/red] {env} API cannot start: {exc}", highlight=False)
        raise typer.Exit(1) from None
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Malformed HTTP: a problem+json 400, not text/plain; a stalled body: 408.
        http=with_body_timeout(ProblemHttpToolsProtocol, body_timeout),
        # uvicorn would take X-Forwarded-For/-Proto from any peer on 127.0.0.1 (any local
        # client under `up`): the API trusts nothing a client says about its path, as the edge.
        proxy_headers=False,
    )


def worker(
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    api: Annotated[
        list[str] | None,
        typer.Option(
            "--api",
            help="The environment's API URL (results go there); repeat for each API process.",
        ),
    ] = None,
    queue_url: QueueUrl = None,
    blob_url: BlobUrl = None,
    name: Annotated[str, typer.Option(help="Worker name, shown in logs and job claims.")] = "",
    lease: Annotated[
        float, typer.Option(help="Lease in seconds, renewed while a job runs.")
    ] = 10.0,
    health_listen: Annotated[
        str | None,
        typer.Option(
            help="Also serve GET /healthz (liveness) and /v1/heartbeat (readiness: the queue "
            "answers) on HOST:PORT, for probes."
        ),
    ] = None,
) -> None:
    """Run one background worker: claim jobs, run them, report results to the API.

    SIGTERM finishes (or releases) the current job, then exits.
    """
    from madbwpu_r.blobs import BlobStoreError, open_blobs
    from madbwpu_r.queue import QueueError, open_queue
    from madbwpu_r.worker.api_client import ApiClient
    from madbwpu_r.worker.ingest import IngestHandler
    from madbwpu_r.worker.runner import Worker

    if not api:
        console.print("[red]error:[/red] --api URL is required (the API the results go to)")
        raise typer.Exit(2)
    name = name or f"{env}-worker-{socket.gethostname()}-{os.getpid()}"
    configure_logging(name)
    paths = EnvPaths(data_dir.resolve(), env)
    secrets = load_or_create_secrets(data_dir, env)
    try:
        queue = open_queue(queue_url or paths.default_queue_url)
    except QueueError as exc:
        console.print(f"[red]error:[/red] {env} worker cannot start: {exc}", highlight=False)
        raise typer.Exit(1) from None
    try:
        blobs = open_blobs(blob_url or paths.default_blob_url)
    except BlobStoreError as exc:
        queue.close()
        console.print(f"[red]error:[/red] {env} worker cannot start: {exc}", highlight=False)
        raise typer.Exit(1) from None
    client = ApiClient(list(api), secrets["worker_token"])
    runner = Worker(
        queue,
        handlers={"ingest": IngestHandler(blobs, client)},
        queues=["ingest"],
        lease=lease,
        name=name,
    )
    health = _worker_health(health_listen, runner, queue) if health_listen else None
    try:
        runner.run()
    finally:
        if health is not None:
            health.close()
        client.close()
        queue.close()
        blobs.close()
    sys.exit(0)


def _worker_health(listen: str, runner: Worker, queue: Queue) -> HealthServer:
    from madbwpu_r.worker.health import HealthServer

    host, port = split_listen(listen)
    try:
        return HealthServer(host, port, runner, lambda: queue.depth("ingest")).start()
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot serve health on {listen}: {exc}")
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(api)
    app.command()(worker)
