"""uvicorn's HTTP protocols for the API, answering what they cannot parse as problem+json.

A request uvicorn's parser refuses (ambiguous framing such as Content-Length with
Transfer-Encoding, a repeated Content-Length, a bad chunk size, a malformed head) never reaches
the app; uvicorn itself would answer a `text/plain` 400. These answer the same 400 as an
RFC 9457 problem and close the connection; when the app is already handling the request (a
bad chunk size in its body) they only close it, as the edge does: the app sees a disconnect,
and no second response can follow on the connection.

A body that stops arriving is cut off after `body_timeout` seconds without a byte (408; see
`body_timeout.py`).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from madbwpu_r.body_timeout import BodyIdleTimer
from madbwpu_r.problems import raw_problem

__all__ = ["ProblemH11Protocol", "ProblemHttpToolsProtocol"]

DETAIL = "Malformed HTTP request (request line, header fields or body framing)."


def _refuse(protocol: Any) -> None:
    cycle = protocol.cycle
    if cycle is None or cycle.response_complete:
        protocol.transport.write(raw_problem(400, DETAIL))
    protocol.transport.close()


class _Problems(BodyIdleTimer):
    """What both protocols add: problem+json refusals and the body timeout."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._watch_body()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching_body()
        super().connection_lost(exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        _refuse(self)


class ProblemHttpToolsProtocol(_Problems, HttpToolsProtocol):
    pass


class ProblemH11Protocol(_Problems, H11Protocol):
    pass
