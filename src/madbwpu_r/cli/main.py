"""The `madbwpu-r` command: one Typer app, each command group registered from its own module."""

from __future__ import annotations

import os

import typer

from madbwpu_r.cli import (
    audit,
    demo,
    deploy,
    edge,
    guardrail,
    identity,
    ingest,
    jobs,
    qa,
    release,
    run,
)

app = typer.Typer(
    name="madbwpu-r",
    help=(
        "Run a data product: versioned datasets served as a cached HTTP API through an edge "
        "cache, an API tier and background workers, for a staging and a production environment."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (
    run,
    ingest,
    edge,
    jobs,
    identity,
    audit,
    release,
    guardrail,
    qa,
    deploy,
    demo,
):
    module.register(app)


PRIVATE_UMASK = 0o077


def main() -> None:
    # Every file and directory a madbwpu-r process (or its children) creates is its owner's
    # only: data files 0600, directories 0700. Tokens and unreleased data are not for others.
    os.umask(PRIVATE_UMASK)
    app()
