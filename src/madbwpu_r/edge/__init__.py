"""Edge tier: a caching reverse proxy (RFC 9111 shared cache) with surrogate-key purges."""

from madbwpu_r.edge.app import EdgeApp, create_app
from madbwpu_r.edge.client import Invalidator
from madbwpu_r.edge.config import EdgeConfig

__all__ = ["EdgeApp", "EdgeConfig", "Invalidator", "create_app"]
