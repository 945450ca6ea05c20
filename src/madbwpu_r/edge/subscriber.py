"""Redis pub/sub purge listener: every node gets every purge, and drops its cache on reconnect."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from madbwpu_r.edge.node import EdgeNode
from madbwpu_r.purge.message import PurgeMessage

log = logging.getLogger("madbwpu_r.edge.subscriber")


class Subscriber:
    def __init__(self, edge: EdgeNode, url: str, channel: str) -> None:
        self.edge = edge
        self.url = url
        self.channel = channel
        self.task: asyncio.Task[None] | None = None
        self.subscriptions = 0
        self.ready = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                client = aioredis.from_url(
                    self.url,
                    socket_keepalive=True,
                    health_check_interval=5,
                    client_name=f"madbwpu-r-edge:{self.edge.config.name}",
                )
            except ValueError as exc:
                log.error("bad redis URL; purges over pub/sub disabled", extra={"error": str(exc)})
                return
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscriptions += 1
                    if self.subscriptions > 1 or self.edge.entry_count():
                        # Purges published while we were away are lost: trust nothing stored.
                        self.edge.drop_all("redis reconnect")
                    self.edge.redis_connected = True
                    self.ready.set()
                    delay = 0.2
                    while True:
                        # A timed read (not listen()) so the periodic health-check PING runs
                        # and a dead connection surfaces as an error instead of a silent wait.
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None and message.get("type") == "message":
                            self._apply(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("redis purge channel lost", extra={"error": str(exc)})
            finally:
                self.edge.redis_connected = False
                await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _apply(self, data: bytes | str) -> None:
        try:
            message = PurgeMessage.model_validate_json(data)
        except ValidationError:
            log.warning("ignored malformed purge message on redis")
            return
        self.edge.apply_purge(message)
