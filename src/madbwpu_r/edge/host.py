"""RFC 9112 3.2: exactly one valid Host on an HTTP/1.1 request, else 400.

Valid values are remembered (a bounded set), so the hit path pays one set lookup.
"""

from __future__ import annotations

import re

# RFC 3986 host [":" port]: an IP literal, or a reg-name (unreserved, pct-encoded, sub-delims).
_HOST = re.compile(
    rb"(?:\[[0-9A-Za-z:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?"
)


class Hosts:
    def __init__(self, max_remembered: int = 256) -> None:
        self.good: set[bytes] = set()
        self.max_remembered = max_remembered

    def problem(self, host: bytes | None, http_version: str) -> str | None:
        """Why this request's Host is refused (None: it is fine). Repeated fields arrive joined."""
        if host is None:
            return None if http_version == "1.0" else "An HTTP/1.1 request needs a Host header."
        if host in self.good:
            return None
        if not valid(host):
            if b", " in host:
                return "A request may carry only one Host header."
            return "The Host header is not a valid host[:port]."
        if len(self.good) < self.max_remembered:
            self.good.add(host)
        return None

    def admit(self, host: bytes | None) -> bool:
        """For the fast paths: a valid Host not seen before is checked once, then remembered."""
        if host is None or not valid(host):
            return False
        if len(self.good) < self.max_remembered:
            self.good.add(host)
        return True


def valid(host: bytes) -> bool:
    return _HOST.fullmatch(host) is not None
