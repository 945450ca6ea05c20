"""The `/rows` query string, read strictly: every mistake is a 400 problem naming its parameter.

Two steps, because `_version` chooses the schema the rest is checked against: `parse_query`
splits the raw query string (UTF-8 only, bounded sizes, each reserved parameter at most once),
`RawQuery.bind` checks every other parameter against the version's columns and types. The
version reader then only ever sees column names it has and values of the column's type, so no
client's input reaches SQLite as something it cannot bind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

from madbwpu_r.problems import ProblemError
from madbwpu_r.store.port import Column
from madbwpu_r.store.versions import FILTER_OPS, QueryError, coerce

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_FILTERS",
    "MAX_LIMIT",
    "MAX_NAME_CHARS",
    "MAX_PARAMS",
    "MAX_VALUE_CHARS",
    "READ_PARAMS",
    "RawQuery",
    "RowQuery",
    "parse_query",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_FILTERS = 100  # SQLite refuses deep expression trees; far below that, far above real use
MAX_PARAMS = 10_000
MAX_NAME_CHARS = 512
MAX_VALUE_CHARS = 8192
READ_PARAMS = ("_after", "_fields", "_limit", "_sort", "_version")
_SHOWN = 100  # characters of a client's name echoed back in a problem


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def bad(parameter: str, message: str) -> ProblemError:
    name = _shown(parameter)
    return ProblemError(400, detail=f"parameter {name!r}: {message}", parameter=name)


@dataclass(frozen=True)
class RowQuery:
    """A `/rows` request the version reader can answer as it is."""

    items: tuple[tuple[str, str], ...]
    limit: int
    sort: str | None
    descending: bool
    fields: list[str] | None
    filters: list[tuple[str, str, str]]
    after: str | None

    def without_after(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.items if k != "_after"]


@dataclass(frozen=True)
class RawQuery:
    items: tuple[tuple[str, str], ...]
    reserved: dict[str, str]

    @property
    def version(self) -> str | None:
        return self.reserved.get("_version")

    def bind(self, schema: Sequence[Column]) -> RowQuery:
        columns = {c.name: c for c in schema}
        filters: list[tuple[str, str, str]] = []
        for key, value in self.items:
            if key in READ_PARAMS:
                continue
            column, op = _filter_key(key, columns)
            if len(filters) == MAX_FILTERS:
                raise bad(
                    key, f"more than {MAX_FILTERS} filters; at most {MAX_FILTERS} are allowed"
                )
            try:
                coerce(columns[column], value)
            except QueryError as exc:
                raise bad(key, str(exc)) from None
            filters.append((column, op, value))
        sort, descending = self._sort(columns)
        return RowQuery(
            items=self.items,
            limit=self._limit(),
            sort=sort,
            descending=descending,
            fields=self._fields(columns),
            filters=filters,
            after=self.reserved.get("_after"),
        )

    def _limit(self) -> int:
        raw = self.reserved.get("_limit")
        if raw is None:
            return DEFAULT_LIMIT
        value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else None
        if value is None or not 1 <= value <= MAX_LIMIT:
            raise bad(
                "_limit", f"must be a whole number between 1 and {MAX_LIMIT}, got {_shown(raw)!r}"
            )
        return value

    def _sort(self, columns: dict[str, Column]) -> tuple[str | None, bool]:
        raw = self.reserved.get("_sort")
        if raw is None:
            return None, False
        descending = raw.startswith("-")
        name = raw[1:] if descending else raw
        if not name:
            raise bad("_sort", "needs a column name: _sort=COL or _sort=-COL")
        return _column("_sort", name, columns), descending

    def _fields(self, columns: dict[str, Column]) -> list[str] | None:
        raw = self.reserved.get("_fields")
        if raw is None:
            return None
        names = raw.split(",")
        for name in names:
            if not name:
                raise bad("_fields", "an empty column name; list columns as _fields=a,b")
            _column("_fields", name, columns)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise bad(
                "_fields", f"columns named more than once: {', '.join(map(repr, duplicates))}"
            )
        return names


def _column(parameter: str, name: str, columns: dict[str, Column]) -> str:
    if name not in columns:
        known = list(columns)
        listed = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
        raise bad(parameter, f"unknown column {_shown(name)!r}; columns are: {listed}")
    return name


def _filter_key(key: str, columns: dict[str, Column]) -> tuple[str, str]:
    """`COL` (eq) or `COL__OP`; an exact column name wins, so `a__b` can be a column."""
    if key in columns:
        return key, "eq"
    column, sep, op = key.rpartition("__")
    if sep and column in columns:
        if op not in FILTER_OPS:
            raise bad(key, f"unknown filter operator {op!r}; use one of {', '.join(FILTER_OPS)}")
        return column, op
    if key.startswith("_"):
        raise bad(key, f"unknown parameter; known: {', '.join(READ_PARAMS)}")
    return _column(key, column if sep else key, columns), "eq"


def _decode(text: str, what: str, parameter: str | None) -> str:
    try:
        return unquote_plus(text, errors="strict")
    except UnicodeDecodeError:
        pass
    if parameter is None:
        raise ProblemError(400, detail=f"a parameter name is not valid UTF-8: {_shown(text)!r}")
    raise bad(parameter, f"the {what} is not valid UTF-8 once percent-decoded")


def parse_query(raw: bytes) -> RawQuery:
    """Split a raw query string; refuse what no version's schema could make valid."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProblemError(400, detail="the query string is not valid UTF-8") from None
    fields = [f for f in text.split("&") if f]
    if len(fields) > MAX_PARAMS:
        raise ProblemError(400, detail=f"more than {MAX_PARAMS} query parameters")
    items: list[tuple[str, str]] = []
    reserved: dict[str, str] = {}
    for field in fields:
        encoded_key, _, encoded_value = field.partition("=")
        key = _decode(encoded_key, "name", None)
        value = _decode(encoded_value, "value", key)
        if len(key) > MAX_NAME_CHARS:
            raise bad(key, f"a parameter name is longer than {MAX_NAME_CHARS} characters")
        if len(value) > MAX_VALUE_CHARS:
            raise bad(key, f"the value is longer than {MAX_VALUE_CHARS} characters")
        if key in READ_PARAMS:
            if key in reserved:
                raise bad(key, "given more than once")
            if not value:
                raise bad(key, "needs a value")
            reserved[key] = value
        items.append((key, value))
    return RawQuery(items=tuple(items), reserved=reserved)
