"""Several backends under one numbering: the same message (epoch, seq) reaches each of them.

An edge reached twice (over HTTP and over Redis) sees a duplicate, which is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from madbwpu_r.purge.message import PurgeMessage
from madbwpu_r.purge.port import Delivery, Purger

__all__ = ["FanOutPurger"]


class FanOutPurger(Purger):
    def __init__(self, backends: Sequence[Purger], epoch: str | None = None) -> None:
        super().__init__(epoch)
        self.backends = list(backends)

    def _deliver(self, message: PurgeMessage) -> Delivery:
        total = Delivery()
        for backend in self.backends:
            total.merge(backend._deliver(message))
        return total

    async def _adeliver(self, message: PurgeMessage) -> Delivery:
        total = Delivery()
        for part in await asyncio.gather(*(b._adeliver(message) for b in self.backends)):
            total.merge(part)
        return total

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
