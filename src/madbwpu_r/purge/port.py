"""The Purger port: purge by surrogate keys or URLs, from sync or async code, get a report.

Numbering lives here once: each purge carries the purger's `epoch` and the next `seq`, sent in
order, so an edge that sees a gap knows it missed one. A backend only delivers one numbered
message (`_deliver` / `_adeliver`) and says what happened in a `Delivery`; it never raises
because a target is unreachable.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from madbwpu_r.purge.message import PurgeMessage

__all__ = ["Delivery", "PurgeReport", "Purger"]


@dataclass
class Delivery:
    """One backend's part of a report: per-edge outcomes and/or the pub/sub publish."""

    edges: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: dict[str, Any] | None = None

    def merge(self, other: Delivery) -> None:
        self.edges.update(other.edges)
        if other.published is not None:
            self.published = other.published


@dataclass(frozen=True)
class PurgeReport:
    """What one purge did. orjson serialises it as a JSON object (the API returns it)."""

    epoch: str
    seq: int
    purged: int
    edges: dict[str, dict[str, Any]]
    unreachable: list[str]  # edges that could not be reached at all
    failed: list[str]  # unreachable or refused (e.g. a wrong token)
    published: dict[str, Any] | None  # {"ok": bool, "receivers"| "error"} on pub/sub, else None

    @classmethod
    def of(cls, message: PurgeMessage, delivery: Delivery) -> PurgeReport:
        edges = delivery.edges
        assert message.epoch is not None and message.seq is not None
        return cls(
            epoch=message.epoch,
            seq=message.seq,
            purged=sum(r.get("purged", 0) for r in edges.values()),
            edges=edges,
            unreachable=[e for e, r in edges.items() if not r["ok"] and "status" not in r],
            failed=[e for e, r in edges.items() if not r["ok"]],
            published=delivery.published,
        )

    @property
    def ok(self) -> bool:
        """Delivered everywhere: no edge failed and the publish (if any) succeeded."""
        return not self.failed and (self.published is None or bool(self.published.get("ok")))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Purger(abc.ABC):
    def __init__(self, epoch: str | None = None) -> None:
        self.epoch = epoch or uuid.uuid4().hex
        self.seq = 0
        self._lock = threading.Lock()
        self._order = threading.Lock()
        self._alock: asyncio.Lock | None = None

    def _next(
        self,
        keys: Sequence[str],
        urls: Sequence[str],
        soft: bool,
        sequence: tuple[str, int] | None = None,
    ) -> PurgeMessage:
        if sequence is None:
            with self._lock:
                self.seq += 1
                sequence = (self.epoch, self.seq)
        epoch, seq = sequence
        return PurgeMessage(keys=list(keys), urls=list(urls), soft=soft, epoch=epoch, seq=seq)

    def purge(
        self,
        keys: Sequence[str] = (),
        urls: Sequence[str] = (),
        soft: bool = False,
        sequence: tuple[str, int] | None = None,
    ) -> PurgeReport:
        """From sync code; blocks until every target answered or timed out.

        `sequence` is the caller's own durable (epoch, seq), e.g. an outbox row's, so a purge
        delivered again after a crash is the same message (an edge sees a duplicate, no gap).
        """
        with self._order:  # in order, so edges never see a false gap
            message = self._next(keys, urls, soft, sequence)
            return PurgeReport.of(message, self._deliver(message))

    async def apurge(
        self,
        keys: Sequence[str] = (),
        urls: Sequence[str] = (),
        soft: bool = False,
        sequence: tuple[str, int] | None = None,
    ) -> PurgeReport:
        """From async code: never blocks the event loop."""
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:
            message = self._next(keys, urls, soft, sequence)
            return PurgeReport.of(message, await self._adeliver(message))

    @abc.abstractmethod
    def _deliver(self, message: PurgeMessage) -> Delivery: ...

    @abc.abstractmethod
    async def _adeliver(self, message: PurgeMessage) -> Delivery: ...

    def close(self) -> None:
        """Release what the backend holds (nothing by default)."""
        return None
