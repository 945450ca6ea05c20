"""Settings of one edge process; every field has a safe default except the origin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EdgeConfig:
    origin: str
    # More origins to balance misses over with `origin` (several API processes); see pool.py.
    extra_origins: tuple[str, ...] = ()
    purge_token: str | None = None
    max_bytes: int = 64 * 2**20
    max_object_bytes: int = 2**20
    redis_url: str | None = None
    redis_channel: str = "madbwpu-r:edge:purge"
    name: str = "edge"
    # How long a key whose response was not storable bypasses request coalescing.
    hit_for_pass_seconds: float = 10.0
    origin_timeout: float = 30.0
    max_connections: int = 256
    # RFC 9111 4.2.2: a fraction of (Date - Last-Modified), capped.
    heuristic_fraction: float = 0.1
    heuristic_max_seconds: float = 86400.0
