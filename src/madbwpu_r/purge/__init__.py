"""Purging the edges: `open_purger(targets)` picks a backend per target URL's scheme.

    http://127.0.0.1:8080     an edge (or Varnish): POST /_edge/purge, fan-out to all of them
    redis://127.0.0.1:6379/0  Redis pub/sub: every edge subscribed to `channel` gets it

All targets share one numbering (epoch + seq), so an edge that missed a purge can tell.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from madbwpu_r._drivers import require_drivers
from madbwpu_r.purge.errors import PurgeConfigError, PurgeError
from madbwpu_r.purge.message import DEFAULT_CHANNEL, PurgeMessage
from madbwpu_r.purge.port import Delivery, Purger, PurgeReport

__all__ = [
    "DEFAULT_CHANNEL",
    "Delivery",
    "PurgeConfigError",
    "PurgeError",
    "PurgeMessage",
    "PurgeReport",
    "Purger",
    "open_purger",
]

# scheme -> (backend kind, driver module, install hint)
_SCHEMES: dict[str, tuple[str, str, str]] = {
    "http": ("http", "httpx", "uv add httpx"),
    "https": ("http", "httpx", "uv add httpx"),
    "redis": ("redis", "redis", "uv add redis"),
    "rediss": ("redis", "redis", "uv add redis"),
    "unix": ("redis", "redis", "uv add redis"),
}


def open_purger(
    targets: Iterable[str],
    *,
    token: str | None = None,
    channel: str = DEFAULT_CHANNEL,
    timeout: float = 5.0,
    epoch: str | None = None,
) -> Purger:
    """One purger over every target; with no target, a purger that reaches nobody."""
    edges: list[str] = []
    pubsub: list[str] = []
    for url in targets:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in _SCHEMES:
            known = ", ".join(sorted(_SCHEMES))
            raise PurgeConfigError(f"unknown purge target scheme in {url!r} (known: {known})")
        kind, driver, hint = _SCHEMES[scheme]
        require_drivers([driver], f"the {scheme} purger", hint, PurgeConfigError)
        (edges if kind == "http" else pubsub).append(url)
    from madbwpu_r.purge.http import HttpPurger

    backends: list[Purger] = [HttpPurger(edges, token=token, timeout=timeout)] if edges else []
    if pubsub:
        from madbwpu_r.purge.redis import RedisPurger

        backends.extend(RedisPurger(u, channel=channel, timeout=timeout) for u in pubsub)
    if len(backends) == 1:
        only = backends[0]
        if epoch:
            only.epoch = epoch
        return only
    if not backends:
        return HttpPurger([], token=token, timeout=timeout, epoch=epoch)
    from madbwpu_r.purge.fanout import FanOutPurger

    return FanOutPurger(backends, epoch=epoch)
