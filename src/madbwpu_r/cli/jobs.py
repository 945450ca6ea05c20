"""Placeholder: replaced by the module that owns this command."""

import typer


def register(app: typer.Typer) -> None:
    pass
