"""A single byte range served from a stored complete response (RFC 9110 14)."""

from __future__ import annotations

from madbwpu_r.edge.rules import parse_http_date


def byte_range(spec: bytes, length: int) -> tuple[int, int] | None | bool:
    """(first, last) for one satisfiable range; False if unsatisfiable; None to ignore Range.

    Several ranges, other units or bad syntax are ignored: the full 200 is always allowed.
    """
    unit, _, ranges = spec.strip().partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in ranges:
        return None
    first_s, dash, last_s = ranges.strip().partition(b"-")
    if not dash:
        return None
    first_s, last_s = first_s.strip(), last_s.strip()
    if not first_s:  # suffix: the last N bytes
        if not last_s.isdigit():
            return None
        suffix = int(last_s)
        if suffix == 0 or length == 0:
            return False
        return max(0, length - suffix), length - 1
    if not first_s.isdigit() or (last_s and not last_s.isdigit()):
        return None
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None
    if first >= length:
        return False
    last = int(last_s) if last_s else length - 1
    return first, min(last, length - 1)


def if_range_holds(if_range: bytes | None, etag: bytes | None, last_modified: bytes | None) -> bool:
    """If-Range: a strong ETag that matches exactly, or the exact Last-Modified date."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(b'"'):
        return etag is not None and etag.strip() == value
    if value.startswith(b"W/"):
        return False
    date = parse_http_date(value)
    return date is not None and date == parse_http_date(last_modified)
