"""Origin fetches for the cache: conditional GETs, 304 refreshes, store-or-stream decisions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from time import time
from typing import Any

import httpx

from madbwpu_r.edge.coalesce import Coalescer
from madbwpu_r.edge.config import EdgeConfig
from madbwpu_r.edge.entry import KEEP_ON_UPDATE, Entry
from madbwpu_r.edge.origin import Origin, OriginError, RawHeaders, response_headers
from madbwpu_r.edge.purge import Generations
from madbwpu_r.edge.rules import (
    ERROR_STATUSES,
    Policy,
    age_field,
    corrected_initial_age,
    delta_seconds,
    header_fields,
    http_date,
    response_policy,
)
from madbwpu_r.edge.stats import Stats
from madbwpu_r.edge.store import Store, secondary_key, vary_fields

log = logging.getLogger("madbwpu_r.edge")

Scope = dict[str, Any]
CC = dict[str, str | None]
# Reasons a response was not stored that say nothing about the next request for the key.
REQUEST_SPECIFIC = frozenset({"authorization", "method", "no-store-request"})


@dataclass
class Outcome:
    """What one origin fetch produced."""

    kind: str  # "entry" | "stream" | "error"
    entry: Entry | None = None
    shareable: bool = False
    stored: bool = False
    response: httpx.Response | None = None
    headers: RawHeaders | None = None
    prefix: bytes = b""
    error: str = ""
    hit_for_pass: bool = False
    revalidated: bool = False
    origin_age: float | None = 0.0  # what the origin said: a fill's own response shows it as is
    own: Entry | None = None  # the requester's full response when the stored one is trimmed


class FillMixin:
    """Part of EdgeApp: everything that talks to the origin on behalf of the cache."""

    config: EdgeConfig
    origin: Origin
    store: Store
    stats: Stats
    coalescer: Coalescer
    generations: Generations

    def _may_serve_stale_on_error(self, entry: Entry | None, now: float, rcc: CC) -> bool:
        """Per response: never past must-revalidate/proxy-revalidate/no-cache; under s-maxage
        (proxy-revalidate for a shared cache) only the origin's own stale-if-error counts."""
        if entry is None or entry.policy.stale_forbidden:
            return False
        window = entry.policy.sie
        if "stale-if-error" in rcc and not entry.policy.s_maxage:
            requested = delta_seconds(rcc["stale-if-error"])
            if requested is not None:
                window = max(window, float(requested))
        return window > 0 and entry.age(now) - entry.lifetime <= window

    async def _fetch(
        self,
        scope: Scope,
        primary: bytes,
        req: dict[bytes, bytes],
        rcc: CC,
        stale: Entry | None,
        start: int,
    ) -> Outcome:
        """One GET to the origin (conditional when a stored response has validators)."""
        extra: RawHeaders = []
        if stale is not None:
            if stale.etag is not None:
                extra.append((b"if-none-match", stale.etag))
            if stale.last_modified is not None:
                extra.append((b"if-modified-since", stale.last_modified))
            if extra:
                self.stats.revalidations += 1
        headers = self.origin.request_headers(scope["headers"], scope.get("client"), True, extra)
        self.coalescer.live += 1
        try:
            return await self._fetch_inner(primary, req, rcc, stale, start, headers)
        finally:
            self.coalescer.live -= 1
            if self.coalescer.live == 0:
                # No fetch that began before a recorded purge is left to be judged by it.
                self.generations.forget()

    async def _fetch_inner(
        self,
        primary: bytes,
        req: dict[bytes, bytes],
        rcc: CC,
        stale: Entry | None,
        start: int,
        headers: RawHeaders,
    ) -> Outcome:
        request_time = time()
        try:
            response = await self.origin.send("GET", primary, headers)
        except OriginError as exc:
            self.stats.origin_errors += 1
            log.warning(
                "origin fetch failed",
                extra={"target": primary.decode("latin-1"), "error": str(exc)},
            )
            return Outcome("error", error=str(exc))
        response_time = time()
        if not 200 <= response.status_code <= 599:  # interim 1xx are never final, never stored
            await response.aclose()
            self.stats.origin_errors += 1
            return Outcome("error", error=f"origin sent invalid status {response.status_code}")
        kept, fields, hidden = response_headers(response, self.origin.hidden)
        if b"date" not in fields:
            date = http_date(response_time).encode()
            fields[b"date"] = date
            kept.append((b"date", date))
        if response.status_code == 304 and stale is not None:
            await response.aclose()
            return self._refreshed(stale, kept + hidden, request_time, response_time, rcc, start)
        if response.status_code in ERROR_STATUSES and self._may_serve_stale_on_error(
            stale, response_time, rcc
        ):
            await response.aclose()
            self.stats.origin_errors += 1
            return Outcome("error", error=f"origin answered {response.status_code}")
        policy = response_policy(
            "GET",
            response.status_code,
            fields,
            rcc,
            b"authorization" in req,
            self.config.heuristic_fraction,
            self.config.heuristic_max_seconds,
            response_time,
            self.config.targeted_cache_control,
        )
        if policy.storable and "no-store" in rcc:
            policy = _unstorable(policy, "no-store-request")
        hit_for_pass = (
            not policy.storable
            and policy.reason not in REQUEST_SPECIFIC
            and response.status_code not in ERROR_STATUSES
        )
        limit = self.config.max_object_bytes
        length = delta_seconds(fields.get(b"content-length", b"").decode("latin-1") or None)
        if length is not None and length > limit:
            return self._stream_outcome(response, kept, b"", length)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return self._stream_outcome(response, kept, b"".join(chunks), None)
        except httpx.HTTPError as exc:
            await response.aclose()
            self.stats.origin_errors += 1
            return Outcome("error", error=f"{type(exc).__name__}: {exc}")
        await response.aclose()
        body = b"".join(chunks)
        vary = vary_fields(fields.get(b"vary"))
        initial_age = corrected_initial_age(fields, request_time, response_time)
        secondary = secondary_key(vary, req)

        def make(headers: list[tuple[bytes, bytes]]) -> Entry:
            return Entry(
                primary,
                response.status_code,
                headers,
                body,
                policy,
                response_time,
                initial_age,
                vary,
                secondary,
                hidden,
            )

        own: Entry | None = None
        if policy.strip and policy.storable:
            # The requester gets the fields meant for it; the stored copy does not keep them.
            own = make(kept)
            kept = [h for h in kept if h[0].decode("latin-1") not in policy.strip]
        entry = make(kept)
        if not policy.storable:
            self.stats.passes += 1
            return Outcome("entry", entry=entry, shareable=False, hit_for_pass=hit_for_pass)
        self.stats.misses += 1
        stored = False
        if not self.generations.purged_since(start, primary, entry.tags):
            stored = self.store.insert(entry)
            self.coalescer.clear_pass(primary)
        origin_age = age_field(fields) if b"age" in fields else 0
        return Outcome(
            "entry",
            entry=entry,
            shareable=True,
            stored=stored,
            origin_age=None if origin_age is None else float(origin_age),
            own=own,
        )

    def _refreshed(
        self,
        stale: Entry,
        update: RawHeaders,
        request_time: float,
        response_time: float,
        rcc: CC,
        start: int,
    ) -> Outcome:
        """RFC 9111 4.3.4: a 304 updates the stored header fields and freshness."""
        names = {n for n, _ in update} - KEEP_ON_UPDATE
        merged = [h for h in (*stale.headers, *stale.hidden) if h[0] not in names]
        merged.extend(h for h in update if h[0] not in KEEP_ON_UPDATE)
        fields = header_fields(merged)
        hidden_names = self.origin.hidden
        hidden = [h for h in merged if h[0] in hidden_names]
        merged = [h for h in merged if h[0] not in hidden_names]
        policy = response_policy(
            "GET",
            stale.status,
            fields,
            rcc,
            False,
            self.config.heuristic_fraction,
            self.config.heuristic_max_seconds,
            response_time,
            self.config.targeted_cache_control,
        )
        entry = Entry(
            stale.primary,
            stale.status,
            merged,
            stale.body,
            policy,
            response_time,
            corrected_initial_age(header_fields(update), request_time, response_time),
            stale.vary,
            stale.secondary,
            hidden,
        )
        if not policy.storable:
            self.store.remove(stale)
            return Outcome("entry", entry=entry, shareable=False)
        self.stats.misses += 1
        stored = False
        if not self.generations.purged_since(start, stale.primary, entry.tags):
            self.store.remove(stale)
            stored = self.store.insert(entry)
        return Outcome("entry", entry=entry, shareable=True, stored=stored, revalidated=True)

    def _stream_outcome(
        self, response: httpx.Response, kept: RawHeaders, prefix: bytes, length: int | None
    ) -> Outcome:
        self.stats.passes += 1
        headers = list(kept)
        if length is not None:
            headers.append((b"content-length", b"%d" % length))
        return Outcome(
            "stream", response=response, headers=headers, prefix=prefix, hit_for_pass=True
        )


def _unstorable(policy: Policy, reason: str) -> Policy:
    return replace(policy, storable=False, reason=reason)
