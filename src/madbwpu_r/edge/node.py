"""What the admin endpoints and the Redis subscriber need of an edge, and nothing more.

They depend on this protocol, not on `EdgeApp`, so app.py, admin.py and subscriber.py form
no import circle (app.py imports them; they import only this).
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from madbwpu_r.edge.config import EdgeConfig
from madbwpu_r.edge.host import Hosts
from madbwpu_r.purge.message import PurgeMessage

__all__ = ["EdgeNode"]


class EdgeNode(Protocol):
    config: EdgeConfig
    registry: CollectorRegistry
    redis_connected: bool
    hosts: Hosts

    def apply_purge(self, message: PurgeMessage) -> dict[str, Any]: ...

    def drop_all(self, reason: str) -> int: ...

    def entry_count(self) -> int: ...

    def snapshot(self) -> dict[str, Any]: ...
