"""A loopback origin on raw sockets: it can drop a connection after reading a request.

No ASGI server lets an app do that, and it is what `stale-close-*` conformance tests and
origin-retry tests need. Each path plays a script: one step per request, the last step repeats.
A step is ("respond", status, headers), ("respond-close", status, headers) (answer, then close
the idle connection without saying so), ("respond-after-103", status, headers) (a 103 Early
Hints interim response first) or ("drop",) (read the request, then close the socket).
"""

from __future__ import annotations

import socket
import threading
from collections import defaultdict
from typing import Any


class RawOrigin:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.scripts: dict[str, list[tuple[Any, ...]]] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def route(self, path: str, *steps: tuple[Any, ...]) -> None:
        self.scripts[path] = list(steps)

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts[path]

    def close(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                with self.lock:
                    self.counts[path] += 1
                    n = self.counts[path]
                script = self.scripts.get(path) or [("respond", 200, {})]
                step = script[min(n, len(script)) - 1]
                if step[0] == "drop":
                    return
                kind, status, headers = step
                body = f"{path} #{n}".encode()
                fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                if kind == "respond-after-103":  # an interim response first (RFC 8297)
                    conn.sendall(
                        b"HTTP/1.1 103 Early Hints\r\nLink: </hint.css>; rel=preload\r\n"
                        b"Cache-Control: max-age=600\r\n\r\n"
                    )
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\n{fields}Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                if kind == "respond-close":
                    return
