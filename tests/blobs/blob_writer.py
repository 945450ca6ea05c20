"""A real writer process for the kill test: streams its stdin into a blob (python FILE ROOT KEY)."""

from __future__ import annotations

import sys

from madbwpu_r.blobs import open_blobs

if __name__ == "__main__":
    url, key = sys.argv[1], sys.argv[2]
    info = open_blobs(url).put(key, sys.stdin.buffer)
    print(info.sha256, flush=True)
