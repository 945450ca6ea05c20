"""`madbwpu-r deploy`, `deploy status`, `rollback`: the pipeline with a live checklist.

The checklist uses the seed's own words ("Validate staging data sync and API heartbeat",
"Trigger production rollout after QA signoff"). There is no option that skips a step.
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from madbwpu_r.cli._release_common import (
    Kubernetes,
    console,
    err,
    kubernetes_dir,
    refusals,
    releases,
)
from madbwpu_r.cli.options import DEFAULT_DIR, DataDir
from madbwpu_r.release.archive import verified_signoff
from madbwpu_r.release.pipeline import STEP_KEYS, DeployRecord, StepRecord, step_title
from madbwpu_r.release.service import Releases

MARKS = {
    "passed": "[x]",
    "failed": "[!]",
    "waiting": "[~]",
    "interrupted": "[?]",
    None: "[ ]",
    "running": "[>]",
}


def checklist(deploy: DeployRecord, running: str | None = None) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_row(
        Text(
            f"{deploy.action} {deploy.deploy_id}: release {deploy.release_id[:16]} -> {deploy.environment} ({deploy.status})"
        )
    )
    for key in STEP_KEYS:
        record = deploy.steps.get(key)
        mark = MARKS["running"] if key == running else MARKS[record.status if record else None]
        line = f"- {mark} {step_title(key, deploy.token)}"
        if record and key != running:
            line += f" — {record.detail}"
        table.add_row(Text(line))
    return table


def run_with_checklist(
    svc: Releases, record: DeployRecord, wait: bool, timeout: float | None
) -> DeployRecord:
    if console.is_terminal:
        with Live(checklist(record), console=console, refresh_per_second=8) as live:

            def show(d: DeployRecord, step: str, rec: StepRecord | None) -> None:
                live.update(checklist(d, running=step if rec is None else None))

            final = svc.run(record, wait=wait, wait_timeout=timeout, listener=show)
            live.update(checklist(final))
    else:
        console.print(
            f"{record.action} {record.deploy_id}: release {record.release_id[:16]} -> {record.environment}"
        )
        shown: set[tuple[str, str]] = set()

        def show(d: DeployRecord, step: str, rec: StepRecord | None) -> None:
            if rec is not None and (step, rec.status) not in shown:
                shown.add((step, rec.status))
                console.print(f"- {MARKS[rec.status]} {step_title(step, d.token)} — {rec.detail}")

        final = svc.run(record, wait=wait, wait_timeout=timeout, listener=show)
    return final


def finish(final: DeployRecord) -> None:
    if final.status == "succeeded":
        console.print(
            f"{final.action} {final.deploy_id} succeeded: production serves {final.release_id[:16]}"
        )
        return
    step = final.next_step() or "archive"
    record = final.steps.get(step)
    reason = record.detail if record else ""
    if final.status in ("waiting", "interrupted"):
        err.print(
            f"{final.deploy_id} is {final.status} at '{step_title(step, final.token)}': {reason}"
        )
        err.print(
            f"resume with: madbwpu-r deploy --resume {final.deploy_id} --as {final.requester}"
        )
        raise typer.Exit(2)
    err.print(
        f"{final.action} {final.deploy_id} {final.status} at '{step_title(step, final.token)}': {reason}"
    )
    raise typer.Exit(1)


def deploy(
    release: str = typer.Argument("", help="Release id or unique prefix; or `status [DEPLOY_ID]`."),
    deploy_id: str = typer.Argument("", help="With `status`: one deploy."),
    to: str = typer.Option("production", "--to", help="Target environment."),
    guardrail: str = typer.Option("", "--guardrail", help="The guardrail token to validate."),
    actor: str = typer.Option("", "--as", help="The deployer identity requesting the deploy."),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for a missing QA signoff instead of stopping."
    ),
    timeout: float = typer.Option(
        0, "--timeout", help="With --wait: stop waiting after S seconds (0: never)."
    ),
    resume: str = typer.Option(
        "", "--resume", help="Continue DEPLOY_ID from its last completed step."
    ),
    kubernetes: Kubernetes = None,
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Ship a release to production through every gate (`deploy status [ID]` shows deploys)."""
    if release == "status":
        return status(deploy_id, data_dir)
    with refusals():
        if not actor:
            raise typer.BadParameter("--as NAME is required", param_hint="--as")
        svc = releases(data_dir)
        if resume:
            record = svc.resume(resume, actor)
        else:
            if not release or not guardrail:
                raise typer.BadParameter(
                    "give RELEASE and --guardrail TOKEN (or --resume DEPLOY_ID)"
                )
            record = svc.start(release, to, guardrail, actor, "deploy", kubernetes_dir(kubernetes))
        final = run_with_checklist(svc, record, wait, timeout or None)
    finish(final)


def status(deploy_id: str = "", data_dir: DataDir = DEFAULT_DIR) -> None:
    svc = releases(data_dir)
    with refusals():
        for env in ("staging", "production"):
            try:
                console.print(
                    f"{env}: serves {svc.served(env) or 'its current versions' if env == 'staging' else svc.served(env)}"
                )
            except Exception as exc:  # noqa: BLE001 - a stopped stack still shows the deploys
                console.print(f"{env}: not reachable ({type(exc).__name__})")
        records = svc.store.deploys()
        if deploy_id:
            records = [r for r in records if r.deploy_id == deploy_id]
            if not records:
                err.print(f"no deploy {deploy_id}")
                raise typer.Exit(1)
        for record in records:
            console.print(checklist(record))
        pending = [
            a
            for a in svc.store.archives()
            if not verified_signoff(svc.store, svc.keys, a.deploy_id)
        ]
        for a in pending:
            when = datetime.fromtimestamp(a.created_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            console.print(
                f"archive of {a.deploy_id} ({when}) waits for compliance: "
                f"madbwpu-r audit signoff {a.location} --as NAME"
            )


def rollback(
    env: str = typer.Option("production", "--env"),
    to_release: str = typer.Option(..., "--to", help="A release deployed to production before."),
    guardrail: str = typer.Option(..., "--guardrail"),
    actor: str = typer.Option(..., "--as"),
    kubernetes: Kubernetes = None,
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Return production to an earlier release, through the same gates as a deploy."""
    with refusals():
        svc = releases(data_dir)
        record = svc.start(
            to_release, env, guardrail, actor, "rollback", kubernetes_dir(kubernetes)
        )
        final = run_with_checklist(svc, record, False, None)
    finish(final)


def register(root: typer.Typer) -> None:
    root.command("deploy")(deploy)
    root.command("rollback")(rollback)
