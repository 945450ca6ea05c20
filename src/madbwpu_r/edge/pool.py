"""The origins an edge forwards misses to: round-robin over the healthy ones.

With one origin nothing here runs: it is always picked, health or not, as before. With several
(`up --apis N`, or `--origin` given more than once) each is checked on its heartbeat every
`interval` seconds (`GET /v1/heartbeat`, healthy on 200); one that fails a check, or whose
connection fails under a request, is taken out at once, and put back as soon as a check
answers again. A request is only ever sent to a member that is out when all of them are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["Member", "OriginPool"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Member:
    base: str
    host: bytes
    healthy: bool = True
    taken_out: int = 0


class OriginPool:
    def __init__(
        self,
        origins: list[str],
        *,
        check_path: str = "/v1/heartbeat",
        interval: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        if not origins:
            raise ValueError("at least one origin")
        self.members = []
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"origin must be an http(s) URL, got {origin!r}")
            base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
            self.members.append(Member(base, parts.netloc.encode()))
        self.check_path = check_path
        self.interval = interval
        self.timeout = timeout
        self._turn = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def balanced(self) -> bool:
        return len(self.members) > 1

    def pick(self, tried: tuple[Member, ...] = ()) -> Member:
        """The next healthy member not tried yet; else any untried; else the first."""
        if not self.balanced:
            return self.members[0]
        untried = [m for m in self.members if m not in tried] or self.members
        healthy = [m for m in untried if m.healthy] or untried
        self._turn += 1
        return healthy[self._turn % len(healthy)]

    def mark_down(self, member: Member, reason: str) -> None:
        if self.balanced and member.healthy:
            member.healthy = False
            member.taken_out += 1
            log.warning("origin taken out", extra={"origin": member.base, "reason": reason})

    def snapshot(self) -> list[dict[str, object]]:
        return [
            {"origin": m.base, "healthy": m.healthy, "taken_out": m.taken_out} for m in self.members
        ]

    # ---- health checks ----------------------------------------------------------------------

    def start(self) -> None:
        if self.balanced and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=len(self.members), keepalive_expiry=4.0)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            while True:
                await asyncio.gather(*(self._check(client, m) for m in self.members))
                await asyncio.sleep(self.interval)

    async def _check(self, client: httpx.AsyncClient, member: Member) -> None:
        try:
            response = await client.get(member.base + self.check_path)
            ok, reason = response.status_code == 200, f"heartbeat {response.status_code}"
        except httpx.HTTPError as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if ok and not member.healthy:
            member.healthy = True
            log.info("origin back", extra={"origin": member.base})
        elif not ok:
            self.mark_down(member, reason)
