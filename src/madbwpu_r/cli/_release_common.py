"""What the release commands share: the service, the identity option and one-line refusals."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from madbwpu_r.release.errors import Refused
from madbwpu_r.release.service import Releases

As = Annotated[
    str, typer.Option("--as", help="The identity that acts (its key must be on this machine).")
]
Kubernetes = Annotated[
    Path | None,
    typer.Option(
        "--kubernetes",
        help="A Kustomize directory with overlays/ENV (e.g. deploy/kubernetes): the guardrail's "
        "scaling rules are checked against what `kubectl kustomize` renders for the target, "
        "as well as against the running stack.",
        exists=True,
        file_okay=False,
    ),
]


def kubernetes_dir(path: Path | None) -> str | None:
    return None if path is None else str(path.resolve())


# No markup: checklists print "[x]" literally; soft wrap keeps one step per line in logs.
console = Console(highlight=False, markup=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


@contextmanager
def refusals() -> Iterator[None]:
    """A refusal or an unreachable tier is one line on stderr and exit status 1, never a traceback."""
    try:
        yield
    except Refused as exc:
        err.print(f"refused: {exc.message}")
        raise typer.Exit(1) from None
    except LookupError as exc:
        err.print(str(exc).strip("'\""))
        raise typer.Exit(1) from None
    except httpx.HTTPError as exc:
        err.print(f"cannot reach the stack: {exc}; is `madbwpu-r up` running?")
        raise typer.Exit(1) from None


def releases(data_dir: Path) -> Releases:
    return Releases(data_dir)
