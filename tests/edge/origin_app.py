"""A configurable origin for edge tests: counts requests, can delay, set headers, fail.

Run: python origin_app.py PORT. Configure a path with POST /_control/set
{"path": "/x", "status": 200, "headers": {...}, "body": "...", "delay": 0.5,
 "honour_conditionals": true, "echo": "accept-language"}; read counters with
GET /_control/stats?path=/x (count, headers, methods, size and SHA-256 of the last request
body, which is streamed, never held). The body may contain {n} (the path's request count).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections import defaultdict
from typing import Any
from urllib.parse import unquote

import orjson
import uvicorn

ROUTES: dict[str, dict[str, Any]] = {}
COUNTS: dict[str, int] = defaultdict(int)
INFLIGHT: dict[str, int] = defaultdict(int)
MAX_INFLIGHT: dict[str, int] = defaultdict(int)
LAST_HEADERS: dict[str, dict[str, str]] = {}
METHODS: dict[str, list[str]] = defaultdict(list)
BODIES: dict[str, dict[str, Any]] = {}


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if status not in (204, 304):
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if status in (204, 304) else body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/_control/set":
        config = orjson.loads(await _body(receive))
        ROUTES[config.pop("path")] = config
        await _send(send, 200, {}, b"{}")
        return
    if path == "/_control/stats":
        query = scope["query_string"].decode()
        target = unquote(query.partition("path=")[2])
        data = {
            "count": COUNTS[target],
            "max_inflight": MAX_INFLIGHT[target],
            "last_headers": LAST_HEADERS.get(target, {}),
            "methods": METHODS[target],
            "body": BODIES.get(target),
        }
        await _send(send, 200, {"content-type": "application/json"}, orjson.dumps(data))
        return
    digest, size = hashlib.sha256(), 0
    while True:  # streamed, never held: a test may send hundreds of MiB
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # an incomplete request is not counted
        chunk = message.get("body", b"")
        digest.update(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            break
    BODIES[path] = {"bytes": size, "sha256": digest.hexdigest()}
    COUNTS[path] += 1
    n = COUNTS[path]
    METHODS[path].append(scope["method"])
    request_headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    LAST_HEADERS[path] = request_headers
    config = dict(ROUTES.get(path, {}))
    INFLIGHT[path] += 1
    MAX_INFLIGHT[path] = max(MAX_INFLIGHT[path], INFLIGHT[path])
    try:
        if config.get("delay"):
            await asyncio.sleep(config["delay"])
        headers = dict(config.get("headers", {"Cache-Control": "max-age=60"}))
        status = config.get("status", 200)
        body = config.get("body", f"body of {path} #{{n}}").replace("{n}", str(n))
        if config.get("echo"):
            body += " " + request_headers.get(config["echo"], "")
        if "size" in config:
            body = "x" * config["size"]
        etag = headers.get("ETag")
        if config.get("honour_conditionals") and etag:
            if request_headers.get("if-none-match") == etag:
                status = 304
        await _send(send, status, headers, body.encode())
    finally:
        INFLIGHT[path] -= 1


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
