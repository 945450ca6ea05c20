"""A request body that stops arriving closes its connection (nginx's `client_body_timeout`).

uvicorn waits for the rest of a body for ever, so a client that sends a head and a few bytes
holds a connection (and, through the edge, an origin connection) as long as it likes. The
timeout is counted between two reads of the body, never over the whole body: an upload that
keeps bytes coming is never cut, however large or slow. Time the server itself spends not
reading (flow control paused the transport because the app is busy with what it has) never
counts against the client.

Both the edge's and the API's uvicorn protocols mix this in and call `_watch_body()` after
each read; while no body is incomplete that costs two attribute reads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from madbwpu_r.problems import raw_problem

__all__ = ["DEFAULT_BODY_TIMEOUT", "BodyIdleTimer", "with_body_timeout"]

DEFAULT_BODY_TIMEOUT = 60.0  # nginx's default client_body_timeout

log = logging.getLogger("madbwpu_r.body_timeout")


class BodyIdleTimer:
    """Closes a connection whose request body sends nothing for `body_timeout` seconds, with a
    `408` problem when no response has started."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    flow: Any
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    _body_timer: asyncio.TimerHandle | None = None
    _body_seen = 0.0

    def _watch_body(self) -> None:
        """After a read: note the progress of a body in flight, or start watching a new one."""
        if self._body_timer is not None:
            self._body_seen = self.loop.time()
            return
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.disconnected:
            self._body_seen = self.loop.time()
            self._body_timer = self.loop.call_later(self.body_timeout, self._check_body)

    def _stop_watching_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if (
            cycle is None
            or not cycle.more_body
            or cycle.disconnected
            or self.transport.is_closing()
        ):
            return  # the body is whole (a later one is watched from its first read)
        now = self.loop.time()
        if self.flow.read_paused:  # the app has not taken what came: the client is not late
            self._body_seen = now
        idle = now - self._body_seen
        if idle < self.body_timeout:
            self._body_timer = self.loop.call_later(self.body_timeout - idle, self._check_body)
            return
        detail = f"The request body stopped arriving: no bytes for {self.body_timeout:g} s."
        log.info("request refused", extra={"status": 408, "detail": detail})
        self._count_refusal()
        if not cycle.response_started:
            self.transport.write(raw_problem(408, detail))
        self.transport.close()  # the app's receive() now says the client is gone

    def _count_refusal(self) -> None:  # noqa: B027 - the edge counts its refusals
        """A hook for the edge's refusal counter."""


def with_body_timeout(protocol: type[Any], seconds: float) -> type[Any]:
    """`protocol` with another body timeout (uvicorn takes a class, not an instance)."""
    return type(protocol.__name__, (protocol,), {"body_timeout": seconds})
