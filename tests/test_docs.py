"""The README documents every command and every public API route (Datasette's docs tests)."""

from __future__ import annotations

from pathlib import Path

import typer.main
from starlette.routing import Route

from madbwpu_r.api import audit, datasets, health, jobs, release
from madbwpu_r.cli.main import app

README = (Path(__file__).parent.parent / "README.md").read_text()


def command_paths() -> list[str]:
    group = typer.main.get_command(app)
    paths = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            paths.extend(f"{name} {sub}" for sub in subcommands)
        else:
            paths.append(name)
    return paths


def test_every_command_is_documented():
    missing = [
        p
        for p in command_paths()
        if f"madbwpu-r {p.split()[0]}" not in README or p.split()[-1] not in README
    ]
    assert not missing, f"README does not document: {missing}"


def test_every_command_has_help():
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help or command.short_help, f"`madbwpu-r {name}` has no help text"


def test_every_public_route_is_documented():
    routes = [
        r
        for r in datasets.routes + health.routes + jobs.routes + audit.routes + release.routes
        if isinstance(r, Route)
    ]
    public = [r for r in routes if "/internal/" not in r.path]
    missing = [r.path for r in public if f" {r.path}`" not in README]
    assert not missing, f"README does not document: {missing}"
