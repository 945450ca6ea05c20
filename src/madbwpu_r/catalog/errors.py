"""What a service operation refuses, in the product's terms; handlers map these to 4xx."""

from __future__ import annotations

__all__ = ["CatalogError", "Conflict", "NotFound"]


class CatalogError(Exception):
    """Base of the service layer's refusals."""


class NotFound(CatalogError, LookupError):
    """The dataset, job or version named does not exist."""


class Conflict(CatalogError):
    """The request contradicts the current state (another dataset's job, a job not dead)."""
