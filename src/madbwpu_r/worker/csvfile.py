"""Read a CSV upload into a typed schema and rows, or say which line is wrong.

The file is read in passes (encoding, then shape and types, then rows) so that a bad file is
refused before anything is written: a malformed file never becomes a partial version.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from madbwpu_r.store.port import Column

_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_REAL = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
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


def _check_encoding(path: Path) -> None:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CSVError(
                    f"line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); save the file as UTF-8 and ingest it again"
                ) from None


def _kind(value: str) -> str:
    if _INTEGER.fullmatch(value):
        return "integer"
    if _REAL.fullmatch(value):
        return "real"
    return "text"


_WIDER = {("integer", "real"): "real", ("real", "integer"): "real"}


def parse_csv(path: Path) -> ParsedCSV:
    if path.stat().st_size == 0:
        raise CSVError("line 1: the file is empty; expected a header line naming the columns")
    _check_encoding(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if not header or all(not h.strip() for h in header):
                raise CSVError("line 1: the header line is empty; expected column names")
            names = [h.strip() for h in header]
            for i, name in enumerate(names, 1):
                if not name:
                    raise CSVError(f"line 1: column {i} has no name")
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise CSVError(f"line 1: duplicate column names: {', '.join(duplicates)}")
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
            raise CSVError(f"line {reader.line_num}: {exc}") from None
    schema = tuple(Column(n, k or "text") for n, k in zip(names, kinds, strict=True))
    return ParsedCSV(path=path, schema=schema, row_count=count)
