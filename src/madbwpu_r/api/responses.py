"""JSON responses rendered with orjson, and the caching headers the edge relies on."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.responses import JSONResponse

# The edge keeps current data until the API purges it; browsers re-check after a few seconds.
CURRENT_CACHE_CONTROL = "public, max-age=5, s-maxage=86400, stale-if-error=86400"
# A version named by digest never changes.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, s-maxage=31536000, immutable"
NO_STORE = "no-store"


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def surrogate_keys(dataset: str, digest: str | None = None) -> str:
    keys = [f"dataset:{dataset}"]
    if digest:
        keys.append(f"version:{digest}")
    return " ".join(keys)


def etag_for(*parts: str) -> str:
    return '"' + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
    return etag in candidates
