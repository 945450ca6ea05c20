"""Purges and invalidations applied to one edge: entries, in-flight fills and generations."""

from __future__ import annotations

import logging
from time import time
from typing import Any

from madbwpu_r.edge.coalesce import Coalescer
from madbwpu_r.edge.config import EdgeConfig
from madbwpu_r.edge.entry import Entry
from madbwpu_r.edge.purge import Generations, Sequencer, url_key
from madbwpu_r.edge.stats import Stats
from madbwpu_r.edge.store import Store
from madbwpu_r.purge.message import PurgeMessage

log = logging.getLogger("madbwpu_r.edge")


class PurgeMixin:
    """Part of EdgeApp: what a purge message, an unsafe method or a missed purge does."""

    config: EdgeConfig
    store: Store
    stats: Stats
    coalescer: Coalescer
    generations: Generations
    sequencer: Sequencer

    def _invalidate_url(self, key: bytes, soft: bool) -> int:
        self.generations.mark_key(key)
        self.coalescer.detach(key)
        self.coalescer.clear_pass(key)
        return self._touch(self.store.by_url(key), soft)

    def _touch(self, entries: list[Entry], soft: bool) -> int:
        now = time()
        for entry in entries:
            if soft:
                entry.soften(now)
            else:
                self.store.remove(entry)
        return len(entries)

    def drop_all(self, reason: str) -> int:
        """A purge may have been missed: nothing stored can be trusted any more."""
        self.generations.mark_all()
        self.coalescer.detach_all()
        dropped = self.store.clear()
        self.stats.drops += 1
        log.warning("dropped whole cache", extra={"reason": reason, "entries": dropped})
        return dropped

    def apply_purge(self, message: PurgeMessage) -> dict[str, Any]:
        self.stats.purges += 1
        dropped = 0
        reason = self.sequencer.observe(message.epoch, message.seq)
        if message.all:
            reason = "purge all"
        if reason is not None:
            dropped = self.drop_all(reason)
        touched = 0
        for url in message.urls:
            touched += self._invalidate_url(url_key(url), message.soft)
        if message.keys:
            self.coalescer.detach_all()  # tags of in-flight fills are unknown until they finish
        for tag in message.keys:
            self.generations.mark_tag(tag)
            touched += self._touch(self.store.by_tag(tag), message.soft)
        self.stats.purged += touched
        return {
            "purged": touched + dropped,
            "dropped": dropped,
            "soft": message.soft,
            "edge": self.config.name,
        }
