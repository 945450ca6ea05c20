"""HTTP fan-out: POST /_edge/purge to every registered edge, in parallel from async code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx

from madbwpu_r.purge.message import PurgeMessage
from madbwpu_r.purge.port import Delivery, Purger

__all__ = ["HttpPurger"]

log = logging.getLogger("madbwpu_r.purge.http")

# Varnish's vmod xkey reads keys from a header (examples/varnish/default.vcl); keep it bounded.
MAX_XKEY_HEADER = 4000


class HttpPurger(Purger):
    def __init__(
        self,
        edges: Sequence[str] = (),
        token: str | None = None,
        timeout: float = 5.0,
        epoch: str | None = None,
    ) -> None:
        super().__init__(epoch)
        self.edges = [e.rstrip("/") for e in edges]
        self.token = token
        self.timeout = timeout

    def _headers(self, message: PurgeMessage) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        keys = " ".join(message.keys)
        if keys and len(keys) <= MAX_XKEY_HEADER and keys.isascii() and keys.isprintable():
            headers["xkey-softpurge" if message.soft else "xkey-purge"] = keys
        return headers

    @staticmethod
    def _outcome(edge: str, response: httpx.Response | None, error: str) -> dict[str, Any]:
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

    def _deliver(self, message: PurgeMessage) -> Delivery:
        body, headers = message.body(), self._headers(message)
        edges: dict[str, dict[str, Any]] = {}
        with httpx.Client(timeout=self.timeout) as client:
            for edge in self.edges:
                try:
                    response = client.post(f"{edge}/_edge/purge", content=body, headers=headers)
                    edges[edge] = self._outcome(edge, response, "")
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    edges[edge] = self._outcome(edge, None, f"{type(exc).__name__}: {exc}")
        return Delivery(edges=edges)

    async def _adeliver(self, message: PurgeMessage) -> Delivery:
        body, headers = message.body(), self._headers(message)
        async with httpx.AsyncClient(timeout=self.timeout) as client:

            async def one(edge: str) -> tuple[str, dict[str, Any]]:
                try:
                    response = await client.post(
                        f"{edge}/_edge/purge", content=body, headers=headers
                    )
                    return edge, self._outcome(edge, response, "")
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    return edge, self._outcome(edge, None, f"{type(exc).__name__}: {exc}")

            return Delivery(edges=dict(await asyncio.gather(*(one(e) for e in self.edges))))
