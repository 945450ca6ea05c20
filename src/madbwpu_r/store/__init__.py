"""Metadata store: `open_store(url)` picks the backend by URL scheme.

    sqlite:////abs/path/state.sqlite          embedded default (WAL, BEGIN IMMEDIATE writes)
    postgresql://user@host:5432/db?schema=S   PostgreSQL, one schema per environment

Every write goes through `store.unit_of_work()`; see `madbwpu_r.store.port`.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from madbwpu_r.store.errors import StoreConfigError, StoreError, StoreUnavailable, UnknownJob
from madbwpu_r.store.port import (
    Column,
    DatasetInfo,
    IngestRecord,
    MetadataStore,
    OutboxMessage,
    OutboxRow,
    Progress,
    UnitOfWork,
    VersionInfo,
)

__all__ = [
    "Column",
    "DatasetInfo",
    "IngestRecord",
    "MetadataStore",
    "OutboxMessage",
    "OutboxRow",
    "Progress",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "UnitOfWork",
    "UnknownJob",
    "VersionInfo",
    "open_store",
]

# scheme -> (module, class, driver modules, install hint)
_POSTGRES = (
    "madbwpu_r.store.postgres",
    "PostgresMetadataStore",
    ("psycopg", "psycopg_pool"),
    "uv add 'psycopg[binary,pool]'",
)
_BACKENDS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "sqlite": (
        "madbwpu_r.store.sqlite",
        "SQLiteMetadataStore",
        ("sqlite3",),
        "a Python built with sqlite3",
    ),
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
}


def open_store(url: str) -> MetadataStore:
    """Open (creating its tables if needed) the metadata store named by `url`."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _BACKENDS:
        known = ", ".join(sorted(_BACKENDS))
        raise StoreConfigError(f"unknown store URL scheme {scheme!r} in {url!r} (known: {known})")
    module_name, class_name, drivers, hint = _BACKENDS[scheme]
    for driver in drivers:
        try:
            importlib.import_module(driver)
        except ImportError:
            raise StoreConfigError(
                f"the {scheme} store needs the {driver!r} driver: run `{hint}`"
            ) from None
    options = dict(parse_qsl(urlsplit(url).query))
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    store: MetadataStore = cls.from_url(url, options)
    return store
