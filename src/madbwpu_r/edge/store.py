"""In-memory LRU bounded by bytes, with secondary (Vary) keys and a surrogate-key index."""

from __future__ import annotations

from collections import OrderedDict

from madbwpu_r.edge.entry import Entry
from madbwpu_r.edge.rules import Headers

# Fields whose list members are case-insensitive tokens with no meaningful order (q-values
# carry the preference), so "EN, fr" and "fr,en" select the same variant.
_UNORDERED = frozenset({b"accept-language", b"accept-encoding"})


def secondary_key(vary: tuple[bytes, ...], request: Headers) -> tuple[bytes, ...]:
    """Normalised request values of the Vary fields (whitespace around commas ignored)."""
    if not vary:
        return ()
    key = []
    for field in vary:
        members = [p.strip() for p in request.get(field, b"").split(b",")]
        if field in _UNORDERED:
            members = sorted(m.lower() for m in members)
        key.append(b",".join(members))
    return tuple(key)


def vary_fields(value: bytes | None) -> tuple[bytes, ...]:
    if not value:
        return ()
    return tuple(sorted({f.strip().lower() for f in value.split(b",") if f.strip()}))


class Store:
    """Not thread-safe: one event loop owns it, so a hit takes no lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        # primary key -> (vary fields, {secondary key: entry})
        self.groups: dict[bytes, tuple[tuple[bytes, ...], dict[tuple[bytes, ...], Entry]]] = {}
        self.lru: OrderedDict[Entry, None] = OrderedDict()
        self.tags: dict[str, set[Entry]] = {}

    def __len__(self) -> int:
        return len(self.lru)

    def lookup(self, primary: bytes, request: Headers) -> Entry | None:
        group = self.groups.get(primary)
        if group is None:
            return None
        vary, variants = group
        entry = variants.get(secondary_key(vary, request) if vary else ())
        if entry is not None:
            self.lru.move_to_end(entry)
        return entry

    def insert(self, entry: Entry) -> bool:
        if entry.size > self.max_bytes:
            return False
        group = self.groups.get(entry.primary)
        if group is not None and group[0] != entry.vary:
            # The origin changed its Vary: the old variants are keyed on the wrong fields.
            for variant in list(group[1].values()):
                self._unlink(variant)
            group = None
        if group is None:
            group = (entry.vary, {})
            self.groups[entry.primary] = group
        old = group[1].get(entry.secondary)
        if old is not None:
            self._unlink(old)
            group = self.groups.setdefault(entry.primary, (entry.vary, {}))
        group[1][entry.secondary] = entry
        self.lru[entry] = None
        self.bytes += entry.size
        for tag in entry.tags:
            self.tags.setdefault(tag, set()).add(entry)
        while self.bytes > self.max_bytes and self.lru:
            victim = next(iter(self.lru))
            self._unlink(victim)
            self.evictions += 1
        return entry in self.lru

    def _unlink(self, entry: Entry) -> None:
        if entry not in self.lru:
            return
        del self.lru[entry]
        self.bytes -= entry.size
        group = self.groups.get(entry.primary)
        if group is not None and group[1].get(entry.secondary) is entry:
            del group[1][entry.secondary]
            if not group[1]:
                del self.groups[entry.primary]
        for tag in entry.tags:
            members = self.tags.get(tag)
            if members is not None:
                members.discard(entry)
                if not members:
                    del self.tags[tag]

    def remove(self, entry: Entry) -> None:
        self._unlink(entry)

    def by_url(self, primary: bytes) -> list[Entry]:
        group = self.groups.get(primary)
        return list(group[1].values()) if group else []

    def by_tag(self, tag: str) -> list[Entry]:
        return list(self.tags.get(tag, ()))

    def clear(self) -> int:
        count = len(self.lru)
        self.groups.clear()
        self.lru.clear()
        self.tags.clear()
        self.bytes = 0
        return count
