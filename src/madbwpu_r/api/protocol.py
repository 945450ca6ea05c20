"""uvicorn's HTTP protocols for the API, answering what they cannot parse as problem+json.

A request uvicorn's parser refuses (ambiguous framing such as Content-Length with
Transfer-Encoding, a repeated Content-Length, a bad chunk size, a malformed head) never reaches
the app; uvicorn itself would answer a `text/plain` 400. These answer the same 400 as an
RFC 9457 problem and close the connection; when the app is already handling the request (a
bad chunk size in its body) they only close it, as the edge does: the app sees a disconnect,
and no second response can follow on the connection.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from madbwpu_r.problems import raw_problem

__all__ = ["ProblemH11Protocol", "ProblemHttpToolsProtocol"]

DETAIL = "Malformed HTTP request (request line, header fields or body framing)."


def _refuse(protocol: Any) -> None:
    cycle = protocol.cycle
    if cycle is None or cycle.response_complete:
        protocol.transport.write(raw_problem(400, DETAIL))
    protocol.transport.close()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        _refuse(self)


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        _refuse(self)
