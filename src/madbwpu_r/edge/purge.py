"""Generation markers against fill races, epoch+seq gap detection, purge URL keys.

The message itself is `madbwpu_r.purge.message.PurgeMessage`, shared with the senders.
"""

from __future__ import annotations

from collections import OrderedDict
from urllib.parse import urlsplit


def url_key(url: str) -> bytes:
    """Cache key of a purge URL: path and query as sent on the wire; scheme/host ignored."""
    parts = urlsplit(url)
    path = parts.path or "/"
    key = path + ("?" + parts.query if parts.query else "")
    return key.encode("latin-1", "replace")


class Generations:
    """A fill records the generation at its start; a purge bumps it for the keys/tags it hits.

    A fill whose key or tags were purged after it started is not stored, and requests that
    arrive after the purge do not take its response.
    """

    def __init__(self, max_marks: int = 100_000) -> None:
        self.max_marks = max_marks
        self.current = 0
        self.all = 0
        self.keys: dict[bytes, int] = {}
        self.tags: dict[str, int] = {}

    def bump(self) -> int:
        self.current += 1
        return self.current

    def mark_key(self, key: bytes) -> None:
        self.keys[key] = self.bump()
        self._bound()

    def mark_tag(self, tag: str) -> None:
        self.tags[tag] = self.bump()
        self._bound()

    def _bound(self) -> None:
        # Never grow without limit while fetches are always in flight: treating every older
        # fill as purged is safe (it is just not stored).
        if len(self.keys) + len(self.tags) > self.max_marks:
            self.all = self.current
            self.forget()

    def mark_all(self) -> None:
        self.all = self.bump()

    def purged_since(self, start: int, key: bytes, tags: tuple[str, ...]) -> bool:
        if self.current == start:
            return False
        if self.all > start or self.keys.get(key, 0) > start:
            return True
        return any(self.tags.get(t, 0) > start for t in tags)

    def forget(self) -> None:
        """Called when no fill is in flight: no older fill can be affected any more."""
        self.keys.clear()
        self.tags.clear()


class Sequencer:
    """Tracks the last seq per publisher epoch to notice purges this node never received."""

    def __init__(self, max_epochs: int = 64) -> None:
        self.max_epochs = max_epochs
        self.last: OrderedDict[str, int] = OrderedDict()

    def observe(self, epoch: str | None, seq: int | None) -> str | None:
        """Returns why the cache must be dropped (missed purge), or None."""
        if epoch is None or seq is None:
            return None
        last = self.last.get(epoch)
        if last is None:
            first_ever = not self.last
            self.last[epoch] = seq
            while len(self.last) > self.max_epochs:
                self.last.popitem(last=False)
            if seq > 1:
                return f"joined epoch {epoch} at seq {seq}: earlier purges were missed"
            if not first_ever:
                # A publisher restarted (or another one started): the tail of an earlier
                # epoch may never have reached this node.
                return f"new epoch {epoch}"
            return None
        self.last.move_to_end(epoch)
        if seq > last + 1:
            self.last[epoch] = seq
            return f"gap in epoch {epoch}: seq {last} -> {seq}"
        if seq > last:
            self.last[epoch] = seq
        return None

    def state(self) -> dict[str, int]:
        return dict(self.last)
