"""What every port's registry shares: a URL's scheme picks a backend, whose optional driver
must be importable, or the error says what to install.

Each port (`queue`, `store`, `blobs`, `purge`) keeps its own table of backends and its own
error type; only the lookup and the install hints are written here, once.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Backend", "backend_class", "require_drivers"]


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a backend lives, the driver modules it imports and how to install them."""

    module: str
    cls: str
    drivers: tuple[str, ...] = ()
    hint: str = ""


def require_drivers(drivers: Iterable[str], who: str, hint: str, error: type[Exception]) -> None:
    """Raise `error` naming the first driver that cannot be imported and how to install it."""
    for driver in drivers:
        try:
            importlib.import_module(driver)
        except ImportError:
            raise error(f"{who} needs the {driver!r} driver: run `{hint}`") from None


def backend_class(
    url: str, backends: Mapping[str, Backend], port: str, error: type[Exception]
) -> Any:
    """The backend class for `url`'s scheme; `error` for an unknown scheme or missing driver."""
    scheme = urlsplit(url).scheme.lower()
    backend = backends.get(scheme)
    if backend is None:
        known = ", ".join(sorted(backends))
        raise error(f"unknown {port} URL scheme {scheme!r} in {url!r} (known: {known})")
    require_drivers(backend.drivers, f"the {scheme} {port}", backend.hint, error)
    return getattr(importlib.import_module(backend.module), backend.cls)
