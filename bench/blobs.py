"""Blob store throughput and cache latency: `uv run python bench/blobs.py [--moto] [--size MIB]`.

Streams one blob of SIZE MiB in and out of a store (a temp `file://` directory by default,
`--url` for any blob URL, `--moto` for moto's S3 server started here on a loopback port), then
times cache misses and hits. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from madbwpu_r.blobs import BlobCache, open_blobs

MiB = 1 << 20


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return proc, "s3://bench/blobs?create=1"


def timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="blob URL (default: a temp file:// directory)")
    parser.add_argument("--moto", action="store_true", help="start moto's S3 server and use it")
    parser.add_argument("--size", type=int, default=256, help="blob size in MiB (default 256)")
    parser.add_argument("--hits", type=int, default=2000, help="cache hits to time")
    args = parser.parse_args()
    proc = None
    with tempfile.TemporaryDirectory() as scratch:
        url = args.url or Path(scratch, "blobs").as_uri()
        if args.moto:
            proc, url = start_moto()
        try:
            store = open_blobs(url)
            store.ping()
            data = os.urandom(args.size * MiB)
            digest = hashlib.sha256(data).hexdigest()
            put = timed(lambda: store.put_content(io.BytesIO(data), sha256=digest))
            get = timed(lambda: store.get_content_file(digest, Path(scratch, "copy")))
            cache = BlobCache(store, Path(scratch, "cache"), max_bytes=4 * args.size * MiB)
            miss = timed(lambda: cache.path(digest))
            fresh = BlobCache(store, Path(scratch, "cache"), max_bytes=4 * args.size * MiB)
            first = timed(lambda: fresh.path(digest))  # a new process verifies its copy once
            hits = timed(lambda: [fresh.path(digest) for _ in range(args.hits)])
            result = {
                "store": str(store),
                "size_mib": args.size,
                "put_mib_s": round(args.size / put, 1),
                "get_verified_mib_s": round(args.size / get, 1),
                "cache_miss_s": round(miss, 3),
                "cache_first_use_s": round(first, 3),
                "cache_hit_us": round(hits / args.hits * 1e6, 1),
            }
            print(orjson.dumps(result).decode())
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
