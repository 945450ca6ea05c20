"""The edge: a raw ASGI caching reverse proxy (a hit touches no lock, no await but send)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from time import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from madbwpu_r.edge import admin
from madbwpu_r.edge.body import BodyTooLarge, ClientGone, RequestBody
from madbwpu_r.edge.coalesce import ERROR, RELEASE, Coalescer, Fill
from madbwpu_r.edge.config import EdgeConfig
from madbwpu_r.edge.entry import Entry
from madbwpu_r.edge.fill import CC, FillMixin, Outcome, Scope
from madbwpu_r.edge.host import Hosts
from madbwpu_r.edge.invalidation import PurgeMixin
from madbwpu_r.edge.origin import Origin, OriginError, RawHeaders, response_headers
from madbwpu_r.edge.purge import Generations, Sequencer, url_key
from madbwpu_r.edge.ranges import byte_range, if_range_holds
from madbwpu_r.edge.rules import (
    SLOW_FIELDS,
    delta_seconds,
    header_fields,
    parse_cache_control,
)
from madbwpu_r.edge.stats import Stats, make_registry
from madbwpu_r.edge.store import Store, secondary_key
from madbwpu_r.problems import problem_response

__all__ = ["EdgeConfig", "EdgeApp", "create_app"]

log = logging.getLogger("madbwpu_r.edge")


X_HIT = (b"x-cache", b"HIT")
X_MISS = (b"x-cache", b"MISS")
X_PASS = (b"x-cache", b"PASS")
X_STALE = (b"x-cache", b"STALE")
X_COALESCED = (b"x-cache", b"COALESCED")
X_REVALIDATED = (b"x-cache", b"REVALIDATED")
EMPTY_BODY = {"type": "http.response.body", "body": b"", "more_body": False}
NO_CC: CC = {}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Fields the fast paths look at: those that need the full rules, and Host (checked once).
FAST_CHECKED = SLOW_FIELDS | {b"host"}
# Scope key: the fill the protocol made this request lead (see fast_join).
LEAD = "madbwpu_r.edge.lead"


def _request_cc(req: dict[bytes, bytes]) -> CC:
    cc = req.get(b"cache-control")
    if cc is not None:
        return parse_cache_control(cc)
    pragma = req.get(b"pragma")
    if pragma is not None and b"no-cache" in pragma.lower():
        return {"no-cache": None}
    return NO_CC


class EdgeApp(FillMixin, PurgeMixin):
    def __init__(self, config: EdgeConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.origin = Origin(config, transport)
        self.store = Store(config.max_bytes)
        self.stats = Stats()
        self.coalescer = Coalescer(config.hit_for_pass_seconds)
        self.hosts = Hosts()
        self.generations = Generations()
        self.sequencer = Sequencer()
        self.registry = make_registry(self.stats, self.store, config.name)
        self.started = time()
        self.redis_connected = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscriber: Any = None

    # ----------------------------------------------------------------- ASGI entry point
    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        if path == "/healthz" or path == "/metrics" or path.startswith("/_edge/"):
            await admin.handle(self, scope, receive, send)
            return
        method: str = scope["method"]
        if method == "GET" or method == "HEAD":
            if LEAD not in scope:
                await self._read(scope, receive, send, method)
                return
            try:
                await self._read(scope, receive, send, method)
            finally:
                lead: Fill = scope[LEAD]
                if not lead.future.done():  # the request did not lead after all
                    self.coalescer.finish(lead, RELEASE)
        else:
            await self._unsafe(scope, receive, send, method)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        self.origin.start()
        if self.config.redis_url:
            from madbwpu_r.edge.subscriber import Subscriber

            self._subscriber = Subscriber(self, self.config.redis_url, self.config.redis_channel)
            self._subscriber.start()

    async def shutdown(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.origin.aclose()

    # ----------------------------------------------------------------- reads (GET, HEAD)
    def fast_hit(self, url: bytes, headers: RawHeaders) -> bytes | None:
        """The whole response for a plain fresh hit, else None (see fastpath.py)."""
        group = self.store.groups.get(url)
        if group is None:
            return None
        host = None
        for name, value in headers:
            if name in FAST_CHECKED:
                if name != b"host" or host is not None:
                    return None
                host = value
        if host not in self.hosts.good and not self.hosts.admit(host):
            return None  # the ASGI path answers 400
        vary, variants = group
        entry = variants.get(secondary_key(vary, header_fields(headers)) if vary else ())
        if entry is None or entry.policy.no_cache:
            return None
        age = entry.initial_age + (time() - entry.response_time)
        if age >= entry.lifetime:
            return None
        self.store.lru.move_to_end(entry)
        self.stats.hits += 1
        return entry.wire(age)

    def fast_join(self, scope: Scope, done: Callable[[bytes | None], None]) -> bool:
        """Called by the protocol before it starts an ASGI task (see fastpath.py).

        A plain GET for a key with a fill in flight waits on the fill without a task and, when
        it lands, gets one pre-encoded response written for it (`done(bytes)`), or `done(None)`
        if that does not fit it (error, not shareable, another variant, purged): then it takes
        the ordinary ASGI path. A plain cold GET is made the key's leader here, at once, so
        the requests read in the same batch join it instead of each starting a task.
        """
        if scope["method"] != "GET" or scope["http_version"] != "1.1":
            return False
        headers = scope["headers"]
        host = None
        for name, value in headers:
            if name in FAST_CHECKED:
                if name != b"host" or host is not None:
                    return False
                host = value
        if host not in self.hosts.good and not self.hosts.admit(host):
            return False
        path: str = scope["path"]
        if path == "/healthz" or path == "/metrics" or path.startswith("/_edge/"):
            return False
        primary: bytes = scope["raw_path"]
        if scope["query_string"]:
            primary = primary + b"?" + scope["query_string"]
        coalescer = self.coalescer
        if primary in self.store.groups or coalescer.passing(primary, time()):
            return False  # a stored variant or hit-for-pass: the full rules decide
        fill = coalescer.fills.get(primary)
        if fill is None:
            scope[LEAD] = coalescer.lead(primary, self.generations.current)
            return False
        self.stats.coalesced += 1
        if not fill.direct:
            fill.future.add_done_callback(partial(self._release_direct, fill))
        fill.direct.append((self.generations.current, headers, done))
        return True

    def _release_direct(self, fill: Fill, future: asyncio.Future[Any]) -> None:
        """Answer every protocol-held waiter of a fill; the bytes are built once for all."""
        waiters, fill.direct = fill.direct, []
        result = None if future.cancelled() else future.result()
        if not isinstance(result, Entry):
            for _, _, done in waiters:
                done(None)
            return
        data = result.wire(result.age(time()), b"COALESCED")
        purged: bool | None = None
        for arrival, headers, done in waiters:
            fits = True
            if arrival > fill.start:
                if purged is None:
                    purged = self.generations.purged_since(fill.start, fill.key, result.tags)
                fits = not purged
            if fits and result.vary:
                fits = secondary_key(result.vary, header_fields(headers)) == result.secondary
            if fits:
                self.stats.coalesced_direct += 1
                done(data)
            else:
                done(None)

    async def _read(self, scope: Scope, receive: Any, send: Any, method: str) -> None:
        primary: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope["query_string"]
        if query:
            primary = primary + b"?" + query
        req = header_fields(scope["headers"])
        host = req.get(b"host")
        if host not in self.hosts.good:
            problem = self.hosts.problem(host, scope["http_version"])
            if problem is not None:
                await self._refuse(scope, receive, send, 400, problem)
                return
        now = time()
        rcc = _request_cc(req) if (b"cache-control" in req or b"pragma" in req) else NO_CC
        entry = self.store.lookup(primary, req)
        if entry is not None:
            age = entry.age(now)
            if rcc is NO_CC:
                if age < entry.lifetime and not entry.policy.no_cache:
                    self.stats.hits += 1
                    await self._serve(send, entry, req, age, method, X_HIT)
                    return
            elif self._fresh_enough(entry, age, rcc):
                self.stats.hits += 1
                await self._serve(send, entry, req, age, method, X_HIT)
                return
            if self._may_serve_stale_while_revalidate(entry, age, rcc):
                self.stats.stale += 1
                self._refresh_in_background(scope, primary, entry)
                await self._serve(send, entry, req, age, method, X_STALE)
                return
            if self._max_stale_allows(entry, age, rcc):
                self.stats.stale += 1
                await self._serve(send, entry, req, age, method, X_STALE)
                return
        if "only-if-cached" in rcc:
            await problem_response(504, detail="only-if-cached and no usable stored response")(
                scope, receive, send
            )
            return
        if method == "HEAD" and entry is None:
            await self._pass(scope, receive, send, method, primary)
            return
        await self._miss(scope, receive, send, method, primary, req, rcc, entry)

    def _fresh_enough(self, entry: Entry, age: float, rcc: CC) -> bool:
        if "no-cache" in rcc or entry.policy.no_cache or age >= entry.lifetime:
            return False
        if "max-age" in rcc:
            max_age = delta_seconds(rcc["max-age"])
            if max_age is None or age > max_age:
                return False
        if "min-fresh" in rcc:
            min_fresh = delta_seconds(rcc["min-fresh"])
            if min_fresh is None or entry.lifetime - age < min_fresh:
                return False
        return True

    def _may_serve_stale_while_revalidate(self, entry: Entry, age: float, rcc: CC) -> bool:
        policy = entry.policy
        if not policy.swr or policy.stale_forbidden or "no-cache" in rcc:
            return False
        if "max-age" in rcc and "max-stale" not in rcc:
            return False
        return age - entry.lifetime <= policy.swr

    def _max_stale_allows(self, entry: Entry, age: float, rcc: CC) -> bool:
        if "max-stale" not in rcc or "no-cache" in rcc:
            return False
        policy = entry.policy
        if policy.stale_forbidden or policy.s_maxage:
            return False
        limit = rcc["max-stale"]
        if limit is None:
            return True
        seconds = delta_seconds(limit)
        return seconds is not None and age - entry.lifetime <= seconds

    async def _serve(
        self,
        send: Any,
        entry: Entry,
        req: dict[bytes, bytes],
        age: float | None,
        method: str,
        x_cache: tuple[bytes, bytes],
    ) -> None:
        if (b"if-none-match" in req or b"if-modified-since" in req) and entry.not_modified(req):
            self.stats.not_modified += 1
            headers = [*entry.headers_304, x_cache]
            if age is not None:
                headers.append((b"age", b"%d" % age))
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send(EMPTY_BODY)
            return
        if b"range" in req and entry.status == 200:
            await self._serve_range(send, entry, req, age, method, x_cache)
            return
        headers = [*entry.send_headers, x_cache]
        if age is not None:
            headers.append((b"age", b"%d" % age))
        await send({"type": "http.response.start", "status": entry.status, "headers": headers})
        await send(entry.body_message if method == "GET" else EMPTY_BODY)

    async def _serve_range(
        self,
        send: Any,
        entry: Entry,
        req: dict[bytes, bytes],
        age: float | None,
        method: str,
        x_cache: tuple[bytes, bytes],
    ) -> None:
        length = len(entry.body)
        wanted = None
        if if_range_holds(req.get(b"if-range"), entry.etag, entry.last_modified):
            wanted = byte_range(req[b"range"], length)
        if wanted is None:
            headers = [*entry.send_headers, x_cache]
            status, body = entry.status, entry.body
        elif wanted is False:
            headers = [*entry.headers, (b"content-range", b"bytes */%d" % length), x_cache]
            headers.append((b"content-length", b"0"))
            status, body = 416, b""
        else:
            assert wanted is not True  # byte_range answers a range, None or False
            first, last = wanted
            body = entry.body[first : last + 1]
            headers = [
                *entry.headers,
                (b"content-range", b"bytes %d-%d/%d" % (first, last, length)),
                (b"content-length", b"%d" % len(body)),
                x_cache,
            ]
            status = 206
        if age is not None:
            headers.append((b"age", b"%d" % age))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if method == "GET" else b""})

    # ----------------------------------------------------------------- misses and fills
    async def _miss(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        method: str,
        primary: bytes,
        req: dict[bytes, bytes],
        rcc: CC,
        stale: Entry | None,
    ) -> None:
        lead = scope.get(LEAD)
        if lead is not None:
            await self._fetch_and_respond(
                scope, receive, send, method, primary, req, rcc, stale, lead
            )
            return
        now = time()
        if self.coalescer.passing(primary, now):
            await self._fetch_and_respond(scope, receive, send, method, primary, req, rcc, stale)
            return
        fill = self.coalescer.fills.get(primary)
        if fill is None:
            fill = self.coalescer.lead(primary, self.generations.current)
            await self._fetch_and_respond(
                scope, receive, send, method, primary, req, rcc, stale, fill
            )
            return
        # Wait for the fetch already in flight for this key.
        arrival = self.generations.current
        self.stats.coalesced += 1
        result = await asyncio.shield(fill.future)
        if isinstance(result, Entry):
            purged = arrival > fill.start and self.generations.purged_since(
                fill.start, primary, result.tags
            )
            if not purged and secondary_key(result.vary, req) == result.secondary:
                await self._serve(send, result, req, result.age(time()), method, X_COALESCED)
                return
        elif result == ERROR:
            current = self.store.lookup(primary, req) or stale
            if self._may_serve_stale_on_error(current, time(), rcc):
                assert current is not None
                self.stats.stale += 1
                await self._serve(send, current, req, current.age(time()), method, X_STALE)
                return
        await self._fetch_and_respond(scope, receive, send, method, primary, req, rcc, stale)

    async def _fetch_and_respond(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        method: str,
        primary: bytes,
        req: dict[bytes, bytes],
        rcc: CC,
        stale: Entry | None,
        fill: Fill | None = None,
    ) -> None:
        start = fill.start if fill is not None else self.generations.current
        try:
            outcome = await self._fetch(scope, primary, req, rcc, stale, start)
        except BaseException:
            if fill is not None:
                self.coalescer.finish(fill, RELEASE)
            raise
        if fill is not None:
            self._resolve(fill, outcome)
        await self._respond(scope, receive, send, method, req, rcc, stale, outcome)

    def _resolve(self, fill: Fill, outcome: Outcome) -> None:
        if outcome.kind == "entry" and outcome.shareable:
            self.coalescer.finish(fill, outcome.entry)
        elif outcome.kind == "error":
            self.coalescer.finish(fill, ERROR)
        else:
            if outcome.hit_for_pass:
                self.coalescer.mark_pass(fill.key, time())
            self.coalescer.finish(fill, RELEASE)

    async def _respond(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        method: str,
        req: dict[bytes, bytes],
        rcc: CC,
        stale: Entry | None,
        outcome: Outcome,
    ) -> None:
        if outcome.kind == "entry":
            entry = outcome.entry
            assert entry is not None
            if outcome.shareable:
                if outcome.revalidated:
                    await self._serve(send, entry, req, entry.age(time()), method, X_REVALIDATED)
                else:
                    own = outcome.own or entry
                    await self._serve(send, own, req, outcome.origin_age, method, X_MISS)
            else:
                await self._serve(send, entry, req, None, method, X_PASS)
            return
        if outcome.kind == "stream":
            await self._stream(send, method, outcome)
            return
        now = time()
        if self._may_serve_stale_on_error(stale, now, rcc):
            assert stale is not None
            self.stats.stale += 1
            await self._serve(send, stale, req, stale.age(now), method, X_STALE)
            return
        # RFC 9111 5.2.2.2: a cache that may not serve its stale copy SHOULD answer 504.
        forbidden = stale is not None and (stale.policy.stale_forbidden or stale.policy.s_maxage)
        status = 504 if forbidden else 502
        await problem_response(
            status, detail="The origin could not be reached; no stored response may be used."
        )(scope, receive, send)

    async def _stream(self, send: Any, method: str, outcome: Outcome) -> None:
        response = outcome.response
        assert response is not None and outcome.headers is not None
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [*outcome.headers, X_PASS],
                }
            )
            if method == "HEAD":
                await send(EMPTY_BODY)
                return
            if outcome.prefix:
                await send(
                    {"type": "http.response.body", "body": outcome.prefix, "more_body": True}
                )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send(EMPTY_BODY)
        finally:
            await response.aclose()

    def _refresh_in_background(self, scope: Scope, primary: bytes, stale: Entry) -> None:
        """stale-while-revalidate: at most one refresh per key in flight."""
        if primary in self.coalescer.fills:
            return
        fill = self.coalescer.lead(primary, self.generations.current)
        raw_headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        snapshot = {"headers": raw_headers, "client": scope.get("client")}
        req = header_fields(raw_headers)

        async def refresh() -> None:
            try:
                outcome = await self._fetch(snapshot, primary, req, NO_CC, stale, fill.start)
            except BaseException:
                self.coalescer.finish(fill, RELEASE)
                raise
            self._resolve(fill, outcome)
            if outcome.response is not None:
                await outcome.response.aclose()

        task = asyncio.get_running_loop().create_task(refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- pass-through
    async def _pass(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        method: str,
        primary: bytes,
        body: RequestBody | None = None,
    ) -> tuple[int, dict[bytes, bytes]] | None:
        headers = self.origin.request_headers(scope["headers"], scope.get("client"), False)
        if body is not None and body.length is not None:
            headers.append((b"content-length", body.length))
        try:
            response = await self.origin.send(method, primary, headers, body)
        except BodyTooLarge:
            await self._refuse(scope, receive, send, 413, _too_large(self.config.max_body_bytes))
            return None
        except ClientGone:
            return None
        except OriginError as exc:
            self.stats.origin_errors += 1
            await problem_response(502, detail=f"The origin could not be reached ({exc}).")(
                scope, receive, send
            )
            return None
        if not 200 <= response.status_code <= 599:  # 1xx here is a switch we never asked for
            await response.aclose()
            await problem_response(502, detail="The origin sent an invalid status code.")(
                scope, receive, send
            )
            return None
        self.stats.passes += 1
        kept, fields, _ = response_headers(response, self.origin.hidden)
        if b"content-length" in fields:
            kept.append((b"content-length", fields[b"content-length"]))
        await self._stream(send, method, Outcome("stream", response=response, headers=kept))
        return response.status_code, fields

    async def _refuse(
        self, scope: Scope, receive: Any, send: Any, status: int, detail: str
    ) -> None:
        """A client's mistake the edge answers itself; the connection is closed after it."""
        self.stats.refused += 1
        await problem_response(status, detail=detail, headers={"Connection": "close"})(
            scope, receive, send
        )

    async def _unsafe(self, scope: Scope, receive: Any, send: Any, method: str) -> None:
        primary: bytes = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            primary = primary + b"?" + scope["query_string"]
        req = header_fields(scope["headers"])
        problem = self.hosts.problem(req.get(b"host"), scope["http_version"])
        if problem is not None:
            await self._refuse(scope, receive, send, 400, problem)
            return
        limit = self.config.max_body_bytes
        length = req.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await self._refuse(scope, receive, send, 400, "Content-Length is not a number.")
                return
            if int(length) > limit:  # refused before a byte of the body is read
                await self._refuse(scope, receive, send, 413, _too_large(limit))
                return
        # RFC 9112 6.3: neither Content-Length nor Transfer-Encoding means no body at all.
        body = None
        if length is not None or b"transfer-encoding" in req:
            body = RequestBody(receive, limit, length)
        result = await self._pass(scope, receive, send, method, primary, body)
        if result is None or method in SAFE_METHODS:
            return
        status, fields = result
        if 200 <= status < 400:
            # RFC 9111 4.4: the target and same-origin Location/Content-Location are invalid now.
            keys = [primary]
            for name in (b"location", b"content-location"):
                value = fields.get(name)
                if value:
                    key = self._same_origin_key(value.decode("latin-1"), scope)
                    if key is not None:
                        keys.append(key)
            for key in keys:
                self.stats.invalidations += self._invalidate_url(key, soft=False)

    def _same_origin_key(self, url: str, scope: Scope) -> bytes | None:
        parts = urlsplit(url)
        if parts.netloc:
            host = header_fields(scope["headers"]).get(b"host", b"").decode("latin-1")
            if parts.netloc not in (host, self.origin.host.decode()):
                return None
        elif not parts.path.startswith("/"):
            return None
        return url_key(url)

    def entry_count(self) -> int:
        return len(self.store)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "origin": self.config.origin,
            **({"origins": self.origin.pool.snapshot()} if self.origin.pool.balanced else {}),
            "uptime_seconds": round(time() - self.started, 3),
            **self.stats.as_dict(),
            "evictions": self.store.evictions,
            "entries": len(self.store),
            "bytes": self.store.bytes,
            "max_bytes": self.store.max_bytes,
            "max_object_bytes": self.config.max_object_bytes,
            "in_flight": len(self.coalescer.fills),
            "hit_for_pass": len(self.coalescer.hit_for_pass),
            "purge_epochs": self.sequencer.state(),
            "redis": None if not self.config.redis_url else {"connected": self.redis_connected},
        }


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes (the edge's --max-body-bytes)."


def create_app(config: EdgeConfig, transport: httpx.AsyncBaseTransport | None = None) -> EdgeApp:
    """`transport` lets tests put an in-process origin behind the edge."""
    return EdgeApp(config, transport)
