"""Redis pub/sub: one PUBLISH reaches every edge node subscribed to the channel."""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from madbwpu_r.purge.message import DEFAULT_CHANNEL, PurgeMessage
from madbwpu_r.purge.port import Delivery, Purger

__all__ = ["RedisPurger"]

log = logging.getLogger("madbwpu_r.purge.redis")


class RedisPurger(Purger):
    def __init__(
        self,
        url: str,
        channel: str = DEFAULT_CHANNEL,
        timeout: float = 5.0,
        epoch: str | None = None,
    ) -> None:
        super().__init__(epoch)
        self.url = url
        self.channel = channel
        self.timeout = timeout

    @staticmethod
    def _failed(exc: Exception) -> dict[str, Any]:
        log.warning("purge publish to redis failed", extra={"error": str(exc)})
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _deliver(self, message: PurgeMessage) -> Delivery:
        try:
            client = redis.Redis.from_url(self.url, socket_timeout=self.timeout)
            try:
                receivers = int(client.publish(self.channel, message.body()))
            finally:
                client.close()
        except (RedisError, OSError, ValueError) as exc:  # ValueError: a malformed URL
            return Delivery(published=self._failed(exc))
        return Delivery(published={"ok": True, "receivers": receivers})

    async def _adeliver(self, message: PurgeMessage) -> Delivery:
        try:
            client = aioredis.from_url(self.url, socket_timeout=self.timeout)
            try:
                receivers = int(await client.publish(self.channel, message.body()))
            finally:
                await client.aclose()
        except (RedisError, OSError, ValueError) as exc:
            return Delivery(published=self._failed(exc))
        return Delivery(published={"ok": True, "receivers": receivers})
