"""Request heads refused inside the HTTP protocol, before an ASGI task or the origin sees them.

Limits (EdgeConfig): the header block in bytes and in fields (`431`), the request target in
bytes (`414`); a malformed head, a missing or repeated Host is `400`. Each refusal is one
problem+json response and a closed connection. Memory is bounded while a head arrives: bytes
are counted per read, so a 32 MiB header line is cut off at the limit, not buffered.

A head must also arrive whole within `header_timeout` seconds (slowloris): counted from the
accept for a connection's first request, from the head's first byte for a later one (the idle
time between requests is `--keep-alive`'s, which uvicorn enforces). A connection past it is
closed, with a `408` problem when part of a head had arrived. A new connection that sends
nothing is closed after `header_timeout` too (uvicorn alone would keep it open for ever). A
body that stops arriving for `body_timeout` seconds is cut off the same way (body_timeout.py).

On a fresh hit the only added work is a few integer comparisons per request; a head timer is
set only for a new connection and for a head that spans reads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from madbwpu_r.body_timeout import BodyIdleTimer
from madbwpu_r.edge.config import EdgeConfig
from madbwpu_r.problems import raw_problem

log = logging.getLogger("madbwpu_r.edge.guard")

_DEFAULTS = EdgeConfig(origin="http://unused")


def refusal(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 problem+json response that closes the connection."""
    return raw_problem(status, detail)


def head_size(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """Bytes of a request head as sent (request line and field lines, CRLFs included)."""
    return len(url) + 16 + sum(len(n) + len(v) + 4 for n, v in headers)


class _Limits:
    """The head limits of the app being served (defaults when it is not an EdgeApp)."""

    def __init__(self, app: Any) -> None:
        config = getattr(app, "config", None)
        if not isinstance(config, EdgeConfig):
            config = _DEFAULTS
        self.header_bytes = config.max_header_bytes
        self.headers = config.max_headers
        self.url_bytes = config.max_url_bytes
        self.header_timeout = config.header_timeout
        self.body_timeout = config.body_timeout
        self.stats = getattr(app, "stats", None)

    def count(self) -> None:
        if self.stats is not None:
            self.stats.refused += 1

    def check(self, url: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        if len(url) > self.url_bytes:
            return 414, f"The request target is longer than {self.url_bytes} bytes."
        if len(headers) > self.headers:
            return 431, f"The request has more than {self.headers} header fields."
        if head_size(url, headers) > self.header_bytes:
            return 431, f"The request's header block is larger than {self.header_bytes} bytes."
        return None


class _HeadTimer(BodyIdleTimer):
    """Closes a connection whose request head is not whole `header_timeout` s after it began
    (and, as `BodyIdleTimer`, one whose body stops arriving)."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _limits: _Limits
    cycle: Any
    _head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self._limits.header_timeout, self._head_timed_out
            )

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _count_refusal(self) -> None:
        self._limits.count()

    def _head_started(self) -> bool:
        raise NotImplementedError

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        timeout = self._limits.header_timeout
        if self._head_started():
            detail = f"The request head did not arrive within {timeout:g} s."
            self._limits.count()
            log.info("request refused", extra={"status": 408, "detail": detail})
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(refusal(408, detail))
        self.transport.close()


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; data_received answers."""


class GuardedHttpToolsProtocol(_HeadTimer, HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits, a head timeout and problem+json refusals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _Limits(self.app)
        self.body_timeout = self._limits.body_timeout
        self._in_head = False
        self._head_bytes = 0  # of the current head, counted over reads that end inside it
        self._heads = 0
        self._chunk = 0
        self._refused: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._stop_watching_body()
        super().connection_lost(exc)

    def _head_started(self) -> bool:
        return self._in_head

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        in_head, heads = self._in_head, self._heads
        self._chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            status, detail = self._refused or (400, f"Malformed HTTP request: {exc}.")
            self._refuse(status, detail)
            return
        if self._in_head:
            self._arm_head_timer()  # this read ended inside a head (no-op if already running)
        if in_head and self._in_head and heads == self._heads:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.header_bytes:
                limit = self._limits.header_bytes
                self._refuse(431, f"The request's header block is larger than {limit} bytes.")
                return
        self._watch_body()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self._limits.url_bytes:
            self._refused = (
                414,
                f"The request target is longer than {self._limits.url_bytes} bytes.",
            )
            raise _Refused

    def head_ok(self) -> None:
        """Called first in on_headers_complete: raises _Refused past a limit."""
        self._in_head = False
        self._heads += 1
        self._disarm_head_timer()
        limits = self._limits
        if (
            len(self.headers) > limits.headers
            or self._head_bytes + self._chunk > limits.header_bytes
        ):
            refused = limits.check(self.url, self.headers)
            if refused is not None:
                self._refused = refused
                raise _Refused

    def on_headers_complete(self) -> None:
        self.head_ok()
        self.start_request()

    def start_request(self) -> None:
        """The head passed every check: build the ASGI cycle (subclasses may answer first)."""
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg)

    def _refuse(self, status: int, detail: str) -> None:
        self._limits.count()
        log.info("request refused", extra={"status": status, "detail": detail})
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(refusal(status, detail))
        # else a response is still being written on this connection: just close.
        self.transport.close()


class _LimitedConnection(h11.Connection):
    """h11's server side, refusing heads with too many fields or too long a target."""

    def __init__(self, limits: _Limits) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.header_bytes)
        self.limits = limits
        self.refused: tuple[int, str] | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                limit = self.limits.header_bytes
                self.refused = 431, f"The request's header block is larger than {limit} bytes."
            else:
                self.refused = 400, f"Malformed HTTP request: {exc}."
            raise
        if isinstance(event, h11.Request):
            self.refused = self.limits.check(event.target, list(event.headers))
            if self.refused is not None:
                raise h11.RemoteProtocolError(self.refused[1], self.refused[0])
        return event


class GuardedH11Protocol(_HeadTimer, H11Protocol):
    """uvicorn's h11 protocol with the same limits, head timeout and refusals (h11 itself checks
    Host)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _Limits(self.app)
        self.body_timeout = self._limits.body_timeout
        self.conn = _LimitedConnection(self._limits)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._stop_watching_body()
        super().connection_lost(exc)

    def _head_started(self) -> bool:
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()  # the head is whole (or the connection is done with)
        elif self._head_started():
            self._arm_head_timer()
        self._watch_body()

    def send_400_response(self, msg: str) -> None:
        refused = getattr(self.conn, "refused", None) or (400, msg)
        self._limits.count()
        log.info("request refused", extra={"status": refused[0], "detail": refused[1]})
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(refusal(*refused))
        self.transport.close()
