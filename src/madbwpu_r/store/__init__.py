"""Metadata store: `open_store(url)` picks the backend by URL scheme.

    sqlite:////abs/path/state.sqlite          embedded default (WAL, BEGIN IMMEDIATE writes)
    postgresql://user@host:5432/db?schema=S   PostgreSQL, one schema per environment

Every write goes through `store.unit_of_work()`; see `madbwpu_r.store.port`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from madbwpu_r._drivers import Backend, backend_class
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

_POSTGRES = Backend(
    "madbwpu_r.store.postgres",
    "PostgresMetadataStore",
    ("psycopg", "psycopg_pool"),
    "uv add 'psycopg[binary,pool]'",
)
_BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(
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
    cls = backend_class(url, _BACKENDS, "store", StoreConfigError)
    options = dict(parse_qsl(urlsplit(url).query))
    store: MetadataStore = cls.from_url(url, options)
    return store
