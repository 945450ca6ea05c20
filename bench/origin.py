"""A tiny origin for the edge benchmarks: cacheable 1 KiB body, a slow path that counts hits.

Raw ASGI on uvicorn so the origin costs almost nothing; on a cache hit it is not touched at all.

    GET /kib              1 KiB body, Cache-Control: public, max-age=3600
    GET /slow/<anything>  sleeps 500 ms (--slow-ms), then the same cacheable body; counted per path
    GET /count?path=/slow/x  -> {"path": "/slow/x", "count": N}  (not cacheable)
    GET /healthz          liveness
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

BODY = b"x" * 1023 + b"\n"
CACHEABLE = [
    (b"content-type", b"text/plain"),
    (b"cache-control", b"public, max-age=3600"),
    (b"content-length", str(len(BODY)).encode()),
]

Scope = dict[str, Any]


def create_app(slow_seconds: float = 0.5):
    """Build the ASGI app; counts live in the closure so each process has its own."""
    counts: Counter[str] = Counter()

    async def send_response(send, status: int, headers: list, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        if path == "/kib":
            await send_response(send, 200, CACHEABLE, BODY)
        elif path.startswith("/slow/"):
            counts[path] += 1
            await asyncio.sleep(slow_seconds)
            await send_response(send, 200, CACHEABLE, BODY)
        elif path == "/count":
            key = parse_qs(scope["query_string"].decode()).get("path", [""])[0]
            body = json.dumps({"path": key, "count": counts[key]}).encode()
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
            await send_response(send, 200, headers, body)
        elif path == "/healthz":
            await send_response(send, 200, [(b"cache-control", b"no-store")], b"ok\n")
        else:
            await send_response(send, 404, [(b"cache-control", b"no-store")], b"not found\n")

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slow-ms", type=float, default=500.0)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.slow_ms / 1000),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
