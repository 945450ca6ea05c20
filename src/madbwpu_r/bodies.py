"""Request bodies read whole, but never past a limit: memory holds at most `limit` bytes.

A `Content-Length` over the limit is refused before a byte of the body is read; a chunked (or
understated) body is refused as soon as the bytes received pass it. Either way the answer is a
`413` problem while the client may still be sending; uvicorn then discards the rest of the body
unread (nothing more is buffered), so a client cannot make the server hold what it sends.
"""

from __future__ import annotations

from starlette.requests import Request

from madbwpu_r.problems import ProblemError

__all__ = ["read_limited", "refuse_declared_size", "too_large"]


def too_large(limit: int, what: str = "the body") -> ProblemError:
    return ProblemError(413, detail=f"{what} exceeds the limit of {limit} bytes")


def refuse_declared_size(request: Request, limit: int, what: str = "the body") -> None:
    """A Content-Length over the limit is refused before a byte of the body is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ProblemError(
            413, detail=f"{what} ({declared} bytes) exceeds the limit of {limit} bytes"
        )


async def read_limited(request: Request, limit: int, what: str = "the body") -> bytes:
    """The whole body, or `413` as soon as it is known to be larger than `limit` bytes."""
    refuse_declared_size(request, limit, what)
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise too_large(limit, what)
    body = bytes(received)
    # As Request.body() keeps it: a later `await request.body()` gets these bytes, not an error.
    request._body = body
    return body
