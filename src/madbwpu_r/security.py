"""Credentials: bearer tokens compared in constant time, and per-data-dir secrets."""

from __future__ import annotations

import hmac

from starlette.requests import Request


def tokens_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an unset expected token never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
