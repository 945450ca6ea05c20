"""RFC 9457 problem details: the one shape every tier uses for a client's or a server's error."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger(__name__)

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ProblemError(Exception):
    """Raised anywhere below a handler; becomes a problem+json response at the boundary."""

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str = "",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail or title or str(status))
        self.status = status
        self.headers = headers
        self.title = title or _TITLES.get(status, "Error")
        self.detail = detail
        self.extra = extra


def problem_response(
    status: int,
    title: str | None = None,
    detail: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    all_headers = {"Cache-Control": "no-store"}
    all_headers.update(headers or {})
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=all_headers
    )


def raw_problem(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 problem+json response that closes the connection, for an HTTP protocol
    refusing what it could not parse (no ASGI app, no Starlette response, exists yet)."""
    title = _TITLES.get(status, "Bad Request")
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, title.encode()),
            b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
            b"content-length: %d\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
            % len(body),
            body,
        )
    )


async def _problem_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.title, exc.detail, headers=exc.headers, **exc.extra)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    return problem_response(exc.status_code, None, str(exc.detail or ""), headers=headers)


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    """A client that hangs up mid-upload is routine, not a server error: one line, no trace."""
    log.info(
        "client disconnected before its request body was read",
        extra={"method": request.method, "path": request.url.path},
    )
    return problem_response(400, detail="The request body was not received completely.")


async def _unhandled(request: Request, exc: Exception) -> Response:
    return problem_response(500, detail="The server failed to handle this request; see its log.")


def install_problem_handlers(app: Starlette) -> None:
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unhandled)
