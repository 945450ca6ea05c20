"""Read a CSV upload into a typed schema and rows, or say which line is wrong.

The file is read in passes (bytes, then shape and types, then rows) so that a bad file is
refused before anything is written: a malformed file never becomes a partial version. Every
limit below is checked in those passes, so a file over one fails its job at once, naming the
line, instead of failing later in the version writer.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from madbwpu_r.store.port import Column
from madbwpu_r.store.values import canonical_integer, parse_real

__all__ = [
    "MAX_COLUMNS",
    "MAX_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "MAX_NAME_CHARS",
    "CSVError",
    "ParsedCSV",
    "parse_csv",
]

MAX_COLUMNS = 1000
MAX_NAME_CHARS = 256
MAX_FIELD_CHARS = 131072  # the csv module's default field size limit, set explicitly below
MAX_LINE_BYTES = 1 << 20  # one physical line, without its line break

csv.field_size_limit(MAX_FIELD_CHARS)

_CONVERT: dict[str, Callable[[str], Any]] = {"integer": int, "real": float, "text": str}


class CSVError(ValueError):
    """The upload is not a well-formed CSV; the message names the line."""


@dataclass(frozen=True)
class ParsedCSV:
    path: Path
    schema: tuple[Column, ...]
    row_count: int

    def rows(self) -> Iterator[tuple[Any, ...]]:
        converters = [_CONVERT[c.type] for c in self.schema]
        with self.path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            next(reader)
            for record in reader:
                if record:
                    yield tuple(
                        None if v == "" else conv(v)
                        for conv, v in zip(converters, record, strict=True)
                    )


def _check_bytes(path: Path) -> None:
    """UTF-8, no NUL byte, no line longer than the limit; read a bounded line at a time."""
    with path.open("rb") as f:
        lineno = 0
        while raw := f.readline(MAX_LINE_BYTES + 2):
            lineno += 1
            line = raw.rstrip(b"\r\n")
            if len(line) > MAX_LINE_BYTES:
                raise CSVError(
                    f"line {lineno}: longer than {MAX_LINE_BYTES} bytes (the line limit)"
                )
            nul = line.find(b"\x00")
            if nul >= 0:
                raise CSVError(
                    f"line {lineno}: NUL byte (0x00) at column {nul + 1}; a CSV file is text"
                )
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CSVError(
                    f"line {lineno}: not valid UTF-8 (byte 0x{line[exc.start]:02x} at column "
                    f"{exc.start + 1}); save the file as UTF-8 and ingest it again"
                ) from None


def _check_header(header: list[str] | None) -> list[str]:
    if not header or all(not h.strip() for h in header):
        raise CSVError("line 1: the header line is empty; expected column names")
    if len(header) > MAX_COLUMNS:
        raise CSVError(f"line 1: {len(header)} columns; at most {MAX_COLUMNS} are allowed")
    names = [h.strip() for h in header]
    for i, name in enumerate(names, 1):
        if not name:
            raise CSVError(f"line 1: column {i} has no name")
        if len(name) > MAX_NAME_CHARS:
            raise CSVError(
                f"line 1: the name of column {i} is longer than {MAX_NAME_CHARS} characters"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CSVError(f"line 1: duplicate column names: {', '.join(duplicates)}")
    folded: defaultdict[str, list[str]] = defaultdict(list)
    for name in names:
        folded[name.casefold()].append(name)
    clashes = [", ".join(group) for group in folded.values() if len(group) > 1]
    if clashes:
        raise CSVError(
            f"line 1: column names that differ only in case: {'; '.join(clashes)}; "
            "rename all but one"
        )
    return names


def _kind(value: str) -> str:
    if canonical_integer(value) is not None:
        return "integer"
    if parse_real(value) is not None:
        return "real"
    return "text"


_WIDER = {("integer", "real"): "real", ("real", "integer"): "real"}


def _message(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a field is longer than {MAX_FIELD_CHARS} characters (the field size limit)"
    return str(exc)


def parse_csv(path: Path) -> ParsedCSV:
    if path.stat().st_size == 0:
        raise CSVError("line 1: the file is empty; expected a header line naming the columns")
    _check_bytes(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            names = _check_header(next(reader, None))
            kinds: list[str | None] = [None] * len(names)
            count = 0
            for record in reader:
                if not record:
                    continue
                if len(record) != len(names):
                    raise CSVError(
                        f"line {reader.line_num}: expected {len(names)} fields as in the header, "
                        f"found {len(record)}"
                    )
                count += 1
                for i, value in enumerate(record):
                    if value == "" or kinds[i] == "text":
                        continue
                    kind = _kind(value)
                    current = kinds[i]
                    if current is None or current == kind:
                        kinds[i] = kind
                    else:
                        kinds[i] = _WIDER.get((current, kind), "text")
        except csv.Error as exc:
            raise CSVError(f"line {reader.line_num}: {_message(exc)}") from None
    schema = tuple(Column(n, k or "text") for n, k in zip(names, kinds, strict=True))
    return ParsedCSV(path=path, schema=schema, row_count=count)
