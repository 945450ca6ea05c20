"""Fresh hits answered inside uvicorn's httptools protocol, before any ASGI task exists.

A hit is the product: for it we skip building the ASGI scope, the per-request task and the
send() round trips, and write one pre-encoded buffer. Anything unusual (a conditional or
Cache-Control request header, HTTP/1.0, pipelining, back-pressure, a stale entry) takes the
ordinary ASGI path, which implements the full rules.

Coalesced misses get the same treatment: a plain GET that would only wait for another
request's fill is held by the protocol (no task) and answered with the fill's pre-encoded
response the moment it lands, so a burst of waiters costs one write each.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from madbwpu_r.edge.guard import GuardedH11Protocol, GuardedHttpToolsProtocol


class FastHitProtocol(GuardedHttpToolsProtocol):
    _fast_done = False

    def start_request(self) -> None:
        fast_hit = getattr(self.app, "fast_hit", None)
        parser = self.parser
        if (
            fast_hit is not None
            and parser.get_method() == b"GET"
            and parser.get_http_version() == "1.1"
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
            and not self.flow.write_paused
        ):
            data = fast_hit(self.url, self.headers)
            if data is not None:
                self._fast_done = True
                self.transport.write(data)
                return
        super().start_request()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        join = getattr(self.app, "fast_join", None)
        if (
            join is not None
            and app is self.app
            and join(cycle.scope, partial(self._fill_landed, cycle, app))
        ):
            return
        super()._start_asgi_task(cycle, app)

    def _fill_landed(self, cycle: Any, app: Any, data: bytes | None) -> None:
        """The fill this request waited on is done: write its response, or run the app."""
        if cycle.disconnected or self.transport.is_closing():
            return
        if data is None or self.flow.write_paused:
            super()._start_asgi_task(cycle, app)
            return
        cycle.response_started = cycle.response_complete = True
        self.transport.write(data)
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()

    def on_body(self, body: bytes) -> None:
        if self._fast_done:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._fast_done:
            self._fast_done = False
            self.on_response_complete()
            return
        super().on_message_complete()


def protocol_class(name: str) -> Any:
    """`httptools` gets the fast hit path; both get the head limits (guard.py)."""
    return FastHitProtocol if name == "httptools" else GuardedH11Protocol
