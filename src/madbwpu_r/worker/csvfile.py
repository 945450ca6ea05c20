"""Read a CSV upload into a typed schema and rows, or say which line is wrong.

The file is read in passes (bytes, then shape and types, then rows) so that a bad file is
refused before anything is written: a malformed file never becomes a partial version. Every
limit below is checked in those passes, so a file over one fails its job at once, naming the
line, instead of failing later in the version writer.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from madbwpu_r.store.port import Column
from madbwpu_r.store.values import CANONICAL_INTEGER, INT64_MAX, INT64_MIN, REAL

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
_BLOCK = 1 << 20

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
    """UTF-8, no NUL byte, no line longer than the limit, in bounded memory.

    A fast pass over 1 MiB blocks; only when it finds a fault does a line-by-line pass run to
    name the line and column.
    """
    if not _bytes_look_right(path):
        _name_the_bad_line(path)


def _bytes_look_right(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    current = 0  # bytes of the line the previous block ended in
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            if b"\x00" in block:
                return False
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                return False
            lines = block.split(b"\n")
            longest = current + len(lines[0])
            if len(lines) > 1:
                longest = max(longest, max(map(len, lines[1:-1]), default=0))
                current = 0
            current += len(lines[-1])
            if max(longest, current) > MAX_LINE_BYTES:  # a CRLF line at the limit: checked again
                return False
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _name_the_bad_line(path: Path) -> None:
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
    """One pattern match per value in the common case; range checks only for long spellings."""
    if CANONICAL_INTEGER.fullmatch(value):
        if len(value) < 19 or INT64_MIN <= int(value) <= INT64_MAX:
            return "integer"
        return _real_or_text(value)  # beyond 64 bits: a real, as long as it is finite
    if REAL.fullmatch(value):
        if len(value) < 300 and "e" not in value and "E" not in value:
            return "real"  # no exponent and under 300 digits: always finite
        return _real_or_text(value)
    return "text"


def _real_or_text(value: str) -> str:
    return "real" if math.isfinite(float(value)) else "text"


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
