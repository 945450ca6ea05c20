"""The one shared keep-alive connection pool to the origin, and header hygiene both ways."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from urllib.parse import urlsplit

import httpx

from madbwpu_r.edge.config import EdgeConfig
from madbwpu_r.edge.entry import COMPUTED, HOP_BY_HOP
from madbwpu_r.edge.pool import Member, OriginPool

RawHeaders = list[tuple[bytes, bytes]]

# A fill fetches the full representation for everyone; the client's own conditions and ranges
# are answered from the result instead.
FILL_STRIPPED = frozenset(
    {
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"if-range",
        b"range",
    }
)


# What proxies in front may say about the client. The edge trusts none of it from a client: it
# drops these and sets its own (README "What the edge forwards, and trusts").
FORWARDING = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-real-ip",
    }
)
# Handled by the edge itself (uvicorn answers 100-continue), never passed on.
EDGE_ONLY = frozenset({b"expect"})

BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Only these are sent again, and only when the first try provably never reached the origin.
RETRIED = frozenset({"GET", "HEAD"})
# A pooled connection found dead: these, before the request's header block was written.
_DEAD_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class OriginError(Exception):
    """The origin could not be reached or did not answer in time."""


class _Delivery:
    """httpcore trace hook: whether the request's header block was written to the socket.

    httpcore swallows a failed write and then reports the failed read, so the exception alone
    cannot say whether the origin got the request; this can. Once written, the origin may have
    acted on it (and a broken framing shows up only on the next response), so no retry.
    """

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = False

    async def __call__(self, name: str, info: dict[str, object]) -> None:
        if name == "http11.send_request_headers.complete":
            self.written = True


def _connection_tokens(headers: RawHeaders) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


class Origin:
    def __init__(self, config: EdgeConfig, transport: httpx.AsyncBaseTransport | None = None):
        parts = urlsplit(config.origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"origin must be an http(s) URL, got {config.origin!r}")
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.host = parts.netloc.encode()
        self.via = f"1.1 madbwpu-r-{config.name}".encode()
        self.config = config
        self.transport = transport
        self._client: httpx.AsyncClient | None = None
        self.retries = 1  # once, for GET/HEAD that never reached the origin
        # Host is replaced by the origin's, Content-Length re-sent only with a body.
        self.dropped = HOP_BY_HOP | FORWARDING | EDGE_ONLY | {b"host", b"content-length"}
        self.forwarded_host = config.forwarded_host.encode() if config.forwarded_host else None
        # Response fields addressed to this edge (RFC 9213 targets, Surrogate-Control).
        targeted = () if config.forward_targeted_cache_control else config.targeted_cache_control
        self.hidden = frozenset({b"surrogate-control", *(t.encode() for t in targeted)})
        self.pool = OriginPool([config.origin, *config.extra_origins])

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self.config.max_connections,
                max_keepalive_connections=self.config.max_connections,
                # Below the 5 s idle timeout common to origins (uvicorn, Node): we close first.
                keepalive_expiry=4.0,
            )
            timeout = httpx.Timeout(self.config.origin_timeout, connect=5.0)
            self._client = httpx.AsyncClient(
                limits=limits, timeout=timeout, transport=self.transport, follow_redirects=False
            )
        return self._client

    def start(self) -> None:
        """Health checks of the origins, when there are several (needs the running loop)."""
        self.pool.start()

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def request_headers(
        self,
        raw: RawHeaders,
        client: tuple[str, int] | None,
        fill: bool,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> RawHeaders:
        drop = _connection_tokens(raw) | self.dropped
        out: RawHeaders = []
        via = b""
        for name, value in raw:
            if name in drop:
                continue
            if fill and name in FILL_STRIPPED:
                continue
            if name == b"via":
                via = value
                continue
            out.append((name, value.strip()))
        out.append((b"host", self.host))
        # Replaced, never appended to: a client's own values could poison what the origin
        # builds from them, and the cache key does not include them.
        forwarded = [b"proto=http"]
        if client:
            address = client[0].encode()
            out.append((b"x-forwarded-for", address))
            forwarded.insert(0, b'for="[%s]"' % address if b":" in address else b"for=" + address)
        if self.forwarded_host:
            out.append((b"x-forwarded-host", self.forwarded_host))
            forwarded.append(b'host="%s"' % self.forwarded_host)
        out.append((b"x-forwarded-proto", b"http"))
        out.append((b"forwarded", b";".join(forwarded)))
        # RFC 9110 7.6.3: a gateway sends Via on every request it forwards.
        out.append((b"via", (via + b", " if via else b"") + self.via))
        out.extend(extra)
        return out

    async def send(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        body: AsyncIterable[bytes] | None = None,
    ) -> httpx.Response:
        """`body` is streamed as it arrives (never retried); its exceptions propagate."""
        if self.pool.balanced:
            return await self._send_balanced(method, target, headers, body)
        url = self.base + target.decode("latin-1")
        retries = self.retries if method in RETRIED and body is None else 0
        # An empty body is still sent (Content-Length: 0) for methods that carry one.
        content: AsyncIterable[bytes] | bytes | None = body
        if body is None and method not in BODILESS:
            content = b""
        for attempt in range(retries + 1):
            delivery = _Delivery()
            request = httpx.Request(
                method, url, headers=headers, content=content, extensions={"trace": delivery}
            )
            try:
                return await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                # Not connected at all, or a pooled connection the origin had closed before
                # the request went out: a fresh connection may try again. Anything later may
                # have reached the origin already (it may even have acted on it).
                undelivered = isinstance(exc, httpx.ConnectError) or (
                    isinstance(exc, _DEAD_CONNECTION) and not delivery.written
                )
                if not undelivered or attempt == retries:
                    raise OriginError(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    async def _send_balanced(
        self, method: str, target: bytes, headers: RawHeaders, body: AsyncIterable[bytes] | None
    ) -> httpx.Response:
        """Several origins: the next healthy one; on failure, the request goes to another.

        An undelivered request may go anywhere again. A GET/HEAD is idempotent (RFC 9110
        9.2.2), so one whose origin died under it (connection reset or closed before the
        response head) is sent to another origin too; other methods are not, once written.
        """
        content: AsyncIterable[bytes] | bytes | None = body
        if body is None and method not in BODILESS:
            content = b""
        tried: tuple[Member, ...] = ()
        for attempt in range(len(self.pool.members) + 1):
            member = self.pool.pick(tried)
            tried += (member,)
            url = member.base + target.decode("latin-1")
            sent = [(n, member.host) if n == b"host" else (n, v) for n, v in headers]
            delivery = _Delivery()
            request = httpx.Request(
                method, url, headers=sent, content=content, extensions={"trace": delivery}
            )
            try:
                return await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                died = isinstance(exc, (httpx.ConnectError, *_DEAD_CONNECTION))
                if died:
                    self.pool.mark_down(member, f"{type(exc).__name__}: {exc}")
                # A streamed request body cannot be sent twice.
                again = died and body is None and (method in RETRIED or not delivery.written)
                if not again or attempt == len(self.pool.members):
                    raise OriginError(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")


def response_headers(
    response: httpx.Response, hidden: frozenset[bytes] = frozenset()
) -> tuple[RawHeaders, dict[bytes, bytes], RawHeaders]:
    """(headers to store/forward, all fields joined by name for the caching rules, fields
    meant for this edge only: kept for the rules, e.g. after a 304, but never sent on)."""
    raw = [(n.lower(), v) for n, v in response.headers.raw]
    drop = _connection_tokens(raw) | HOP_BY_HOP | COMPUTED
    kept: RawHeaders = []
    private: RawHeaders = []
    fields: dict[bytes, bytes] = {}
    for name, value in raw:
        fields[name] = fields[name] + b", " + value if name in fields else value
        if name in hidden:
            private.append((name, value))
        elif name not in drop:
            kept.append((name, value))
    return kept, fields, private
