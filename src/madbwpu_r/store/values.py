"""Strict spellings of the typed values a version holds, shared by ingest and reads.

One definition, so a value a file's column was typed by is spelled the same way in a filter.
Strict on purpose: Python's `int()`/`float()` accept `1_0`, surrounding whitespace, `+1`,
non-ASCII digits, `nan` and `inf`, none of which a CSV column or a filter means.
"""

from __future__ import annotations

import math
import re

__all__ = ["INT64_MAX", "INT64_MIN", "canonical_integer", "parse_integer", "parse_real"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_MAX_INT_CHARS = 40  # far above the 20 characters of any int64; bounds int()'s work

_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_INTEGER = re.compile(r"-?[0-9]+")
_REAL = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _int64(text: str) -> int | None:
    if len(text) > _MAX_INT_CHARS:
        return None
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else None


def canonical_integer(text: str) -> int | None:
    """A CSV integer: no sign but `-`, no leading zeros, within SQLite's 64-bit range."""
    return _int64(text) if _CANONICAL_INTEGER.fullmatch(text) else None


def parse_integer(text: str) -> int | None:
    """A filter's integer: ASCII digits with an optional `-`, within the 64-bit range."""
    return _int64(text) if _INTEGER.fullmatch(text) else None


def parse_real(text: str) -> float | None:
    """A decimal or exponent number that is finite as a double (no NaN, no infinities)."""
    if not _REAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None
