"""The one shared keep-alive connection pool to the origin, and header hygiene both ways."""

from __future__ import annotations

from collections.abc import Sequence
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
        drop = _connection_tokens(raw) | HOP_BY_HOP
        out: RawHeaders = []
        forwarded_for = b""
        original_host = b""
        via = b""
        for name, value in raw:
            if name in drop or name == b"content-length":
                continue
            if name == b"host":
                original_host = value
                continue
            if fill and name in FILL_STRIPPED:
                continue
            if name == b"x-forwarded-for":
                forwarded_for = value + b", "
                continue
            if name == b"via":
                via = value
                continue
            if name == b"x-forwarded-proto":
                continue
            out.append((name, value.strip()))
        out.append((b"host", self.host))
        if client:
            out.append((b"x-forwarded-for", forwarded_for + client[0].encode()))
        if original_host:
            out.append((b"x-forwarded-host", original_host))
        out.append((b"x-forwarded-proto", b"http"))
        # RFC 9110 7.6.3: a gateway sends Via on every request it forwards.
        out.append((b"via", (via + b", " if via else b"") + self.via))
        out.extend(extra)
        return out

    async def send(
        self, method: str, target: bytes, headers: RawHeaders, body: bytes = b""
    ) -> httpx.Response:
        if self.pool.balanced:
            return await self._send_balanced(method, target, headers, body)
        url = self.base + target.decode("latin-1")
        retries = self.retries if method in RETRIED else 0
        # An empty body is still sent (Content-Length: 0) for methods that carry one.
        content = body if body or method not in BODILESS else None
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
        self, method: str, target: bytes, headers: RawHeaders, body: bytes
    ) -> httpx.Response:
        """Several origins: the next healthy one; on failure, the request goes to another.

        An undelivered request may go anywhere again. A GET/HEAD is idempotent (RFC 9110
        9.2.2), so one whose origin died under it (connection reset or closed before the
        response head) is sent to another origin too; other methods are not, once written.
        """
        content = body if body or method not in BODILESS else None
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
                again = died and (method in RETRIED or not delivery.written)
                if not again or attempt == len(self.pool.members):
                    raise OriginError(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")


def response_headers(response: httpx.Response) -> tuple[RawHeaders, dict[bytes, bytes]]:
    """(headers to store/forward, all fields joined by name for the caching rules)."""
    raw = [(n.lower(), v) for n, v in response.headers.raw]
    drop = _connection_tokens(raw) | HOP_BY_HOP | COMPUTED
    kept: RawHeaders = []
    fields: dict[bytes, bytes] = {}
    for name, value in raw:
        fields[name] = fields[name] + b", " + value if name in fields else value
        if name not in drop:
            kept.append((name, value))
    return kept, fields
