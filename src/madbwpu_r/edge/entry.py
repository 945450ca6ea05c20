"""A stored response, with everything a hit needs already encoded."""

from __future__ import annotations

from http import HTTPStatus

from madbwpu_r.edge.rules import Headers, Policy, etag_matches, parse_http_date

# Fields never stored or forwarded as-is: hop-by-hop (RFC 9110 7.6.1) plus those the edge computes.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
COMPUTED = frozenset({b"content-length", b"age", b"x-cache", b"surrogate-control"})
# RFC 9110 15.4.5: what a 304 carries (plus caching-relevant extras).
NOT_MODIFIED_FIELDS = frozenset(
    {
        b"cache-control",
        b"content-location",
        b"date",
        b"etag",
        b"expires",
        b"vary",
        b"last-modified",
        b"surrogate-key",
    }
)
# RFC 9111 3.2: fields a 304 must not overwrite in the stored response.
# ETag/Content-MD5 describe the stored body, which a 304 does not replace.
KEEP_ON_UPDATE = frozenset(
    {b"content-length", b"content-encoding", b"content-range", b"etag", b"content-md5"}
)

ENTRY_OVERHEAD = 256


class Entry:
    """Immutable once stored; a refresh (304) builds a new one."""

    __slots__ = (
        "primary",
        "secondary",
        "status",
        "headers",
        "body",
        "send_headers",
        "headers_304",
        "wire_head",
        "body_message",
        "size",
        "response_time",
        "initial_age",
        "lifetime",
        "policy",
        "etag",
        "last_modified",
        "validator_date",
        "tags",
        "vary",
        "hidden",
        "__weakref__",
    )

    def __init__(
        self,
        primary: bytes,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        policy: Policy,
        response_time: float,
        initial_age: float,
        vary: tuple[bytes, ...],
        secondary: tuple[bytes, ...],
        hidden: list[tuple[bytes, bytes]] | tuple[()] = (),
    ) -> None:
        """`hidden`: fields for this edge's rules only (targeted cache control), never sent."""
        self.primary = primary
        self.secondary = secondary
        self.status = status
        self.headers = headers
        self.body = body
        self.policy = policy
        self.response_time = response_time
        self.initial_age = initial_age
        self.lifetime = policy.lifetime
        self.vary = vary
        self.hidden = hidden
        fields: dict[bytes, bytes] = {}
        for name, value in headers:
            fields[name] = value
        self.etag = fields.get(b"etag")
        self.last_modified = fields.get(b"last-modified")
        self.validator_date = parse_http_date(self.last_modified or fields.get(b"date"))
        self.tags = tuple(
            t for t in fields.get(b"surrogate-key", b"").decode("latin-1").split() if t
        )
        # RFC 9110 8.6: no Content-Length on 204 (and 304 never reaches a client from here).
        self.send_headers = (
            list(headers)
            if status in (204, 304)
            else [*headers, (b"content-length", b"%d" % len(body))]
        )
        self.headers_304 = [h for h in headers if h[0] in NOT_MODIFIED_FIELDS]
        self.wire_head = _status_line(status) + b"".join(
            n + b": " + v + b"\r\n" for n, v in self.send_headers
        )
        self.body_message = {"type": "http.response.body", "body": body, "more_body": False}
        # Counted as held: the body, the header list and its pre-encoded copy, the key.
        self.size = (
            len(body)
            + sum(len(n) + len(v) + 4 for n, v in (*headers, *hidden))
            + len(self.wire_head)
            + len(primary)
            + ENTRY_OVERHEAD
        )

    def wire(self, age: float, x_cache: bytes = b"HIT") -> bytes:
        """The whole HTTP/1.1 response to a plain GET, for the fast paths."""
        return b"".join(
            (self.wire_head, b"age: %d\r\nx-cache: %s\r\n\r\n" % (age, x_cache), self.body)
        )

    def age(self, now: float) -> float:
        return self.initial_age + (now - self.response_time)

    def soften(self, now: float) -> None:
        """Soft purge: stale from now on, so stale-while-revalidate/-if-error windows start now."""
        self.lifetime = min(self.lifetime, max(0.0, self.age(now) - 0.001))

    def not_modified(self, request: Headers) -> bool:
        """Whether a client's conditional GET/HEAD is answered 304 (RFC 9110 13.2.2)."""
        if self.status != 200:
            return False
        inm = request.get(b"if-none-match")
        if inm is not None:
            return etag_matches(inm, self.etag)
        ims = request.get(b"if-modified-since")
        if ims is not None and self.validator_date is not None:
            since = parse_http_date(ims)
            return since is not None and self.validator_date <= since
        return False


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode())
