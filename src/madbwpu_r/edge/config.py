"""Settings of one edge process; every field has a safe default except the origin."""

from __future__ import annotations

from dataclasses import dataclass

from madbwpu_r.body_timeout import DEFAULT_BODY_TIMEOUT


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
    # Request limits (README "Limits"): refused before the origin sees anything.
    max_header_bytes: int = 32 * 2**10  # request line + header fields -> 431
    max_headers: int = 100  # header field lines -> 431
    max_url_bytes: int = 8 * 2**10  # request target -> 414
    max_body_bytes: int = 2**30  # request body (streamed to the origin) -> 413
    # Seconds a request head may take to arrive whole (slowloris); past it: 408 and closed.
    header_timeout: float = 20.0
    # Seconds a request body may send nothing before it is cut off (408; body_timeout.py).
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    # RFC 9213 targeted cache control: fields this edge obeys, most specific first.
    targeted_cache_control: tuple[str, ...] = ("cdn-cache-control",)
    forward_targeted_cache_control: bool = False
    # Sent as X-Forwarded-Host / Forwarded host= instead of anything the client says.
    forwarded_host: str | None = None
    admin_token: str | None = None
