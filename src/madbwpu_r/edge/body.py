"""A request body streamed from the client to the origin, cut off at the edge's body limit.

Bytes move as they arrive (uvicorn pauses reading past 64 KiB not yet consumed), so memory
stays bounded whatever the size; past the limit the upload stops and the client gets 413.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


class BodyTooLarge(Exception):
    """The client sent more than the limit (chunked, so nothing said so up front)."""


class ClientGone(Exception):
    """The client disconnected before its body was complete: the origin request is abandoned."""


class RequestBody:
    def __init__(self, receive: Any, limit: int, length: bytes | None = None) -> None:
        self.receive = receive
        self.limit = limit
        self.length = length  # the client's Content-Length, forwarded as is
        self.received = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            self.received += len(chunk)
            if self.received > self.limit:
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body"):
                return
