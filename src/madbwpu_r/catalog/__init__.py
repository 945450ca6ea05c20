"""The service layer: the product's verbs over the store, queue, blob and purge ports.

HTTP handlers (`api/`) and CLI commands (`cli/`) parse, authenticate and call a `Catalog`;
nothing above this package talks to an engine.
"""

from __future__ import annotations

from madbwpu_r.catalog.delivery import Purger, deliverers
from madbwpu_r.catalog.errors import CatalogError, Conflict, NotFound
from madbwpu_r.catalog.relay import OutboxRelay
from madbwpu_r.catalog.service import (
    INGEST_QUEUE,
    JOB_STATUS,
    Accepted,
    Catalog,
    Published,
    upload_key,
)

__all__ = [
    "INGEST_QUEUE",
    "JOB_STATUS",
    "Accepted",
    "Catalog",
    "CatalogError",
    "Conflict",
    "NotFound",
    "OutboxRelay",
    "Published",
    "Purger",
    "deliverers",
    "upload_key",
]
