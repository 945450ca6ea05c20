"""`madbwpu-r jobs ...` and `madbwpu-r status`: what the background workers are doing.

Both read the queue directly, worker counts included (workers announce themselves there),
so they work while the API is down, which is exactly when an operator needs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from madbwpu_r.cli.options import DEFAULT_DIR, DataDir, Env, QueueUrl, StoreUrl
from madbwpu_r.config import EnvPaths

__all__ = ["register"]

STATES = ("scheduled", "ready", "running", "succeeded", "dead")
DEFAULT_QUEUES = ("ingest",)

jobs_app = typer.Typer(
    name="jobs",
    help=(
        "Inspect background jobs and re-run dead ones. Reads the environment's queue directly "
        "(the SQLite file DIR/<env>/state.sqlite unless --queue-url names Redis), so it works "
        "while the API is down."
    ),
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line).")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


@contextmanager
def _open(data_dir: Path, env: str, queue_url: str | None) -> Iterator[Any]:
    """The environment's queue; refuses to create an empty SQLite file by a typo'd path."""
    from madbwpu_r.queue import open_queue
    from madbwpu_r.queue.errors import QueueError

    paths = EnvPaths(data_dir, env)
    if queue_url is None:
        if not paths.state_db.exists():
            raise _fail(
                f"no queue at {paths.state_db}: start the product with "
                f"`madbwpu-r up --data-dir {data_dir}`, or pass --data-dir/--env/--queue-url"
            )
        queue_url = paths.default_queue_url
    try:
        queue = open_queue(queue_url)
    except QueueError as exc:
        raise _fail(f"cannot open queue: {exc}") from None
    try:
        yield queue
    except QueueError as exc:
        raise _fail(str(exc)) from None
    finally:
        queue.close()


@contextmanager
def _catalog(
    data_dir: Path, env: str, queue_url: str | None, store_url: str | None
) -> Iterator[Any]:
    """The environment's service layer, for the verbs that change something."""
    from madbwpu_r.catalog import Catalog, CatalogError, OutboxRelay, deliverers
    from madbwpu_r.store import StoreError, open_store

    paths = EnvPaths(data_dir, env)
    with _open(data_dir, env, queue_url) as queue:
        try:
            store = open_store(store_url or paths.default_store_url)
        except StoreError as exc:
            raise _fail(f"cannot open the metadata store: {exc}") from None
        try:
            yield Catalog(store, queue, OutboxRelay(store, deliverers(queue)))
        except (CatalogError, StoreError) as exc:
            raise _fail(str(exc)) from None
        finally:
            store.close()


def _when(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _as_dict(info: Any) -> dict[str, Any]:
    fields = (
        "id", "queue", "state", "attempts", "max_attempts", "last_error",
        "enqueued_at", "updated_at", "payload", "result",
    )  # fmt: skip
    return {name: getattr(info, name, None) for name in fields}


def _jobs_table(rows: list[Any], title: str) -> Table:
    table = Table(
        title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True
    )
    table.add_column("ID", no_wrap=True, min_width=32)
    table.add_column("QUEUE", no_wrap=True, min_width=6)
    table.add_column("TASK", no_wrap=True, min_width=6)
    table.add_column("STATE", no_wrap=True, min_width=9)
    table.add_column("TRIES", justify="right", no_wrap=True, min_width=5)
    table.add_column("UPDATED", justify="right", no_wrap=True, min_width=7)
    table.add_column("LAST ERROR", overflow="ellipsis", no_wrap=True, max_width=40)
    styles = {"dead": "red", "running": "yellow", "succeeded": "green"}
    now = time.time()
    for info in rows:
        task = info.payload.get("task", "") if isinstance(info.payload, dict) else ""
        state = f"[{styles[info.state]}]{info.state}[/]" if info.state in styles else info.state
        table.add_row(
            str(info.id),
            info.queue,
            str(task),
            state,
            f"{info.attempts}/{info.max_attempts}",
            _ago(now - info.updated_at) + " ago" if info.updated_at else "-",
            (info.last_error or "").splitlines()[0] if info.last_error else "",
        )
    return table


def _print_jobs(rows: list[Any], title: str, as_json: bool) -> None:
    if as_json:
        for info in rows:
            typer.echo(orjson.dumps(_as_dict(info), default=str).decode())
        return
    if not rows:
        typer.echo(f"{title}: none.")
        return
    Console().print(_jobs_table(rows, title))


@jobs_app.command("list")
def list_jobs(
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    queue_url: QueueUrl = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", "-s", help=f"Only this state: {' | '.join(STATES)}.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    as_json: Json = False,
) -> None:
    """List the most recent jobs, newest first."""
    if state is not None and state not in STATES:
        raise _fail(f"unknown state {state!r}; use one of {', '.join(STATES)}")
    with _open(data_dir, env, queue_url) as q:
        rows = q.list(queue=queue, state=state, limit=limit)
    _print_jobs(rows, f"Jobs ({env})", as_json)


@jobs_app.command("dead")
def dead_jobs(
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    queue_url: QueueUrl = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    as_json: Json = False,
) -> None:
    """List dead jobs (the dead-letter queue).

    A job is dead when it exhausted its attempts or failed permanently. Read its error with `madbwpu-r jobs show ID`, fix the cause, then `madbwpu-r jobs retry ID`.
    """
    with _open(data_dir, env, queue_url) as q:
        rows = q.list(queue=queue, state="dead", limit=limit)
    _print_jobs(rows, f"Dead jobs ({env})", as_json)


@jobs_app.command("show")
def show_job(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Job id, as returned by the API.")],
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    queue_url: QueueUrl = None,
    as_json: Json = False,
) -> None:
    """Show one job: state, attempts, payload, result and last error."""
    with _open(data_dir, env, queue_url) as q:
        info = q.get(job_id)
    if info is None:
        raise _fail(f"no job {job_id!r} in the {env} queue")
    data = _as_dict(info)
    if as_json:
        typer.echo(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(show_header=False, title=f"Job {info.id}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name in ("id", "queue", "state"):
        table.add_row(name, str(data[name]))
    table.add_row("attempts", f"{info.attempts}/{info.max_attempts}")
    table.add_row("enqueued (UTC)", _when(info.enqueued_at))
    table.add_row("updated (UTC)", _when(info.updated_at))
    for name in ("payload", "result"):
        value = data[name]
        text = "-" if value is None else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        table.add_row(name, text)
    table.add_row("last error", info.last_error or "-")
    Console().print(table)


@jobs_app.command("retry")
def retry_job(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Id of a dead job.")],
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    queue_url: QueueUrl = None,
    store_url: StoreUrl = None,
    actor: Annotated[
        str | None,
        typer.Option("--as", help="The identity that acts (recorded in the audit log)."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="PEM key of the --as identity.")
    ] = None,
) -> None:
    """Put a dead job back on its queue with a fresh set of attempts (an audited act)."""
    who = _acting(data_dir, actor, key_file) if actor else "local-operator"
    with _catalog(data_dir, env, queue_url, store_url) as catalog:
        info = catalog.retry_dead(job_id, actor=who)
    typer.echo(f"Job {job_id} is back on queue {info.queue!r}.")


def _acting(data_dir: Path, actor: str, key_file: Path | None) -> str:
    """Check that `actor` is registered and its key is at hand (see `cli/acting.py`)."""
    from madbwpu_r.cli.acting import acting_key
    from madbwpu_r.cli.identity import _directory

    with _directory(data_dir) as directory:
        return acting_key(data_dir, directory, actor, key_file).name


def status(
    data_dir: DataDir = DEFAULT_DIR,
    env: Env = "staging",
    queue_url: QueueUrl = None,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Queue to show (repeatable). Default: every known one."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Queue depth and workers per queue for one environment.

    Per queue: ready, in flight, scheduled (delayed or backing off), dead, the age of the oldest ready job, and the live workers: those that announced themselves to the queue within their lease, wherever they run.
    """
    with _open(data_dir, env, queue_url) as q:
        names = list(queue or [])
        if not names:
            known = [j.queue for j in q.list(limit=1000)] + list(DEFAULT_QUEUES)
            names = sorted(dict.fromkeys(known))
        depths = {name: (q.depth(name), q.workers(name)) for name in names}
    rows = []
    for name, (d, workers) in depths.items():
        rows.append(
            {
                "queue": name,
                "ready": d.ready,
                "in_flight": d.in_flight,
                "scheduled": d.scheduled,
                "dead": d.dead,
                "oldest_ready_age_seconds": round(d.oldest_ready_age, 3),
                "workers": workers,
            }
        )
    if as_json:
        typer.echo(orjson.dumps({"env": env, "queues": rows}).decode())
        return
    table = Table(title=f"Queues ({env})")
    for col in ("QUEUE", "READY", "IN FLIGHT", "SCHEDULED", "DEAD", "OLDEST READY", "WORKERS"):
        table.add_column(col, justify="left" if col == "QUEUE" else "right")
    for row in rows:
        table.add_row(
            row["queue"],
            str(row["ready"]),
            str(row["in_flight"]),
            str(row["scheduled"]),
            f"[red]{row['dead']}[/]" if row["dead"] else "0",
            _ago(row["oldest_ready_age_seconds"]) if row["ready"] else "-",
            str(row["workers"]),
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.command("status")(status)
