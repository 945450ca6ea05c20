"""Request coalescing: one origin fetch per key, waiters woken by an asyncio future."""

from __future__ import annotations

import asyncio
from typing import Any

# Results a fill hands its waiters besides a shareable Entry:
RELEASE = "release"  # not shareable: every waiter goes to the origin on its own, at once
ERROR = "error"  # the origin failed: waiters try stale-if-error, else fetch themselves


class Fill:
    __slots__ = ("key", "start", "future", "direct")

    def __init__(self, key: bytes, start: int) -> None:
        self.key = key
        self.start = start  # purge generation when the fetch began
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Waiters held by the HTTP protocol itself: (arrival generation, headers, done).
        self.direct: list[tuple[int, Any, Any]] = []


class Coalescer:
    def __init__(self, pass_seconds: float) -> None:
        self.fills: dict[bytes, Fill] = {}
        self.pass_seconds = pass_seconds
        self.hit_for_pass: dict[bytes, float] = {}
        self.live = 0  # origin fetches in flight, coalesced or not (see Generations.forget)

    def lead(self, key: bytes, start: int) -> Fill:
        fill = Fill(key, start)
        self.fills[key] = fill
        return fill

    def finish(self, fill: Fill, result: Any) -> None:
        if self.fills.get(fill.key) is fill:
            del self.fills[fill.key]
        if not fill.future.done():
            fill.future.set_result(result)

    def detach(self, key: bytes) -> None:
        """After a purge, later requests must not join a fill that began before it."""
        self.fills.pop(key, None)

    def detach_all(self) -> None:
        self.fills.clear()

    def passing(self, key: bytes, now: float) -> bool:
        until = self.hit_for_pass.get(key)
        if until is None:
            return False
        if until > now:
            return True
        del self.hit_for_pass[key]
        return False

    def mark_pass(self, key: bytes, now: float) -> None:
        if len(self.hit_for_pass) > 100_000:
            self.hit_for_pass = {k: t for k, t in self.hit_for_pass.items() if t > now}
            if len(self.hit_for_pass) > 100_000:
                self.hit_for_pass.clear()  # forgetting only costs some coalescing
        self.hit_for_pass[key] = now + self.pass_seconds

    def clear_pass(self, key: bytes) -> None:
        self.hit_for_pass.pop(key, None)
