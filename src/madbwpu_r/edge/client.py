"""Invalidator: the API's side of purging — fan-out to every edge plus Redis pub/sub."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import httpx
import orjson

log = logging.getLogger("madbwpu_r.edge.client")

DEFAULT_CHANNEL = "madbwpu-r:edge:purge"
MAX_XKEY_HEADER = 4000


class Invalidator:
    """Numbers every purge (epoch + seq) so an edge that missed one can tell and drop its cache.

    Never raises because an edge is unreachable: the result names every edge and its outcome.
    """

    def __init__(
        self,
        edges: list[str] | tuple[str, ...] = (),
        token: str | None = None,
        redis_url: str | None = None,
        channel: str = DEFAULT_CHANNEL,
        timeout: float = 5.0,
        epoch: str | None = None,
    ) -> None:
        self.edges = [e.rstrip("/") for e in edges]
        self.token = token
        self.redis_url = redis_url
        self.channel = channel
        self.timeout = timeout
        self.epoch = epoch or uuid.uuid4().hex
        self.seq = 0
        self._lock = threading.Lock()
        self._order = threading.Lock()
        self._alock: asyncio.Lock | None = None

    def _message(
        self,
        keys: list[str],
        urls: list[str],
        soft: bool,
        sequence: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        """`sequence` is the caller's own durable (epoch, seq), e.g. from an outbox row."""
        if sequence is None:
            with self._lock:
                self.seq += 1
                sequence = (self.epoch, self.seq)
        return {
            "keys": list(keys),
            "urls": list(urls),
            "soft": soft,
            "epoch": sequence[0],
            "seq": sequence[1],
        }

    def _headers(self, message: dict[str, Any]) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        keys = " ".join(message["keys"])
        if keys and len(keys) <= MAX_XKEY_HEADER and keys.isascii() and keys.isprintable():
            # For Varnish with vmod xkey (examples/varnish/default.vcl); our edges read the JSON.
            headers["xkey-softpurge" if message["soft"] else "xkey-purge"] = keys
        return headers

    @staticmethod
    def _edge_result(edge: str, response: httpx.Response | None, error: str) -> dict[str, Any]:
        if response is None:
            log.warning("edge unreachable for purge", extra={"edge": edge, "error": error})
            return {"ok": False, "error": error}
        if response.status_code != 200:
            return {"ok": False, "status": response.status_code, "error": response.text[:500]}
        try:
            body = response.json()
        except ValueError:
            body = {}
        return {"ok": True, "purged": body.get("purged", 0), "dropped": body.get("dropped", 0)}

    @staticmethod
    def _summary(message: dict[str, Any], edges: dict[str, Any], published: Any) -> dict[str, Any]:
        return {
            "epoch": message["epoch"],
            "seq": message["seq"],
            "purged": sum(r.get("purged", 0) for r in edges.values()),
            "edges": edges,
            "unreachable": [e for e, r in edges.items() if not r["ok"] and "status" not in r],
            "failed": [e for e, r in edges.items() if not r["ok"]],  # unreachable or refused
            "published": published,
        }

    def purge(
        self,
        keys: list[str] | tuple[str, ...] = (),
        urls: list[str] | tuple[str, ...] = (),
        soft: bool = False,
        sequence: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        with self._order:  # in order, so edges never see a false gap
            message = self._message(list(keys), list(urls), soft, sequence)
            body = orjson.dumps(message)
            published = self._publish(body)
            results = self._post_all(body, self._headers(message))
        return self._summary(message, results, published)

    def _post_all(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        with httpx.Client(timeout=self.timeout) as client:
            for edge in self.edges:
                try:
                    response = client.post(f"{edge}/_edge/purge", content=body, headers=headers)
                    results[edge] = self._edge_result(edge, response, "")
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    results[edge] = self._edge_result(edge, None, f"{type(exc).__name__}: {exc}")
        return results

    async def apurge(
        self,
        keys: list[str] | tuple[str, ...] = (),
        urls: list[str] | tuple[str, ...] = (),
        soft: bool = False,
    ) -> dict[str, Any]:
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:  # in order, so edges never see a false gap
            message = self._message(list(keys), list(urls), soft)
            body = orjson.dumps(message)
            published = await self._apublish(body)
            headers = self._headers(message)
            async with httpx.AsyncClient(timeout=self.timeout) as client:

                async def one(edge: str) -> tuple[str, dict[str, Any]]:
                    try:
                        response = await client.post(
                            f"{edge}/_edge/purge", content=body, headers=headers
                        )
                        return edge, self._edge_result(edge, response, "")
                    except (httpx.HTTPError, httpx.InvalidURL) as exc:
                        return edge, self._edge_result(edge, None, f"{type(exc).__name__}: {exc}")

                results = dict(await asyncio.gather(*(one(e) for e in self.edges)))
        return self._summary(message, results, published)

    def _publish(self, body: bytes) -> dict[str, Any] | None:
        if not self.redis_url:
            return None
        import redis
        from redis.exceptions import RedisError

        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=self.timeout)
            try:
                return {"ok": True, "receivers": int(client.publish(self.channel, body))}
            finally:
                client.close()
        except (RedisError, OSError, ValueError) as exc:  # ValueError: a malformed URL
            log.warning("purge publish to redis failed", extra={"error": str(exc)})
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _apublish(self, body: bytes) -> dict[str, Any] | None:
        if not self.redis_url:
            return None
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        try:
            client = aioredis.from_url(self.redis_url, socket_timeout=self.timeout)
            try:
                return {"ok": True, "receivers": int(await client.publish(self.channel, body))}
            finally:
                await client.aclose()
        except (RedisError, OSError, ValueError) as exc:  # ValueError: a malformed URL
            log.warning("purge publish to redis failed", extra={"error": str(exc)})
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
