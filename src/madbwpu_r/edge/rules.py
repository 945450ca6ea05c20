"""RFC 9111 / RFC 5861 rules for a shared cache, as pure functions over parsed headers."""

from __future__ import annotations

import calendar
import re
import time as _time
from dataclasses import dataclass
from email.utils import formatdate

from http_sfv import Dictionary, InnerList

Headers = dict[bytes, bytes]  # lower-case names, repeated fields joined with ", "

# RFC 9110 15.1: statuses cacheable by default (heuristically); 206 is left out (no ranges here).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# Statuses we understand (RFC 9111 3: must-understand stores only these).
UNDERSTOOD_STATUSES = HEURISTIC_STATUSES | frozenset(
    {
        302,
        303,
        307,
        400,
        401,
        403,
        406,
        408,
        409,
        411,
        412,
        413,
        415,
        421,
        422,
        429,
        500,
        502,
        503,
        504,
    }
)
ERROR_STATUSES = frozenset({500, 502, 503, 504})
# Request fields whose presence needs the full rules (conditionals, request directives, ranges).
SLOW_FIELDS = frozenset(
    {
        b"cache-control",
        b"pragma",
        b"if-none-match",
        b"if-modified-since",
        b"range",
        b"if-range",
        b"if-match",
        b"if-unmodified-since",
        b"connection",
        b"expect",
    }
)


_SURROGATE_OVERRIDES = frozenset(
    {
        "no-store",
        "private",
        "no-cache",
        "max-age",
        "s-maxage",
        "must-revalidate",
        "proxy-revalidate",
    }
)


def header_fields(raw: list[tuple[bytes, bytes]]) -> Headers:
    """Lower-case (name, value) pairs to one value per name, repeated fields comma-joined."""
    fields: Headers = {}
    for name, value in raw:
        if name in fields:
            fields[name] = fields[name] + b", " + value
        else:
            fields[name] = value
    return fields


def parse_cache_control(value: bytes | str | None) -> dict[str, str | None]:
    """Directive names lower-cased; the first occurrence wins; quoted values unquoted."""
    if not value:
        return {}
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    out: dict[str, str | None] = {}
    for part in _split_list(value):
        name, eq, arg = part.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        arg_value: str | None = None
        if eq:
            arg_value = arg.strip()
            if len(arg_value) >= 2 and arg_value[0] == '"' and arg_value[-1] == '"':
                arg_value = arg_value[1:-1]
        if name in out:
            # A repeated directive with a conflicting value is ambiguous: be conservative.
            if name in ("max-age", "s-maxage") and out[name] != arg_value:
                out[name] = "0"
            continue
        out[name] = arg_value
    return out


def _split_list(value: str) -> list[str]:
    """Split on commas outside quoted strings."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def delta_seconds(value: str | None) -> int | None:
    """RFC 9111 1.2.2; invalid values give None, huge values are capped."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        return None
    return min(int(value), 2**31)


_DAYS = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAYS = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_TIME = r"(\d\d):(\d\d):(\d\d)"
# RFC 9110 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime forms; nothing else.
_IMF_FIXDATE = re.compile(rf"{_DAYS}, (\d\d) {_MONTH} (\d{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"{_LONG_DAYS}, (\d\d)-{_MONTH}-(\d\d) {_TIME} GMT")
_ASCTIME = re.compile(rf"{_DAYS} {_MONTH} ([ \d]\d) {_TIME} (\d{{4}})")


def parse_http_date(value: bytes | str | None, now: float | None = None) -> float | None:
    """An HTTP-date (RFC 9110 5.6.7) as a POSIX timestamp; any other text is None (invalid)."""
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if match := _IMF_FIXDATE.fullmatch(value):
        day, month, year, hh, mm, ss = match.groups()
    elif match := _ASCTIME.fullmatch(value):
        month, day, hh, mm, ss, year = match.groups()
    elif match := _RFC850.fullmatch(value):
        day, month, yy, hh, mm, ss = match.groups()
        # A two-digit year more than 50 years ahead is the most recent past year with them.
        this_year = _time.gmtime(now).tm_year
        year_n = this_year - this_year % 100 + int(yy)
        if year_n > this_year + 50:
            year_n -= 100
        year = str(year_n)
    else:
        return None
    y, m, d = int(year), _MONTHS.index(month) + 1, int(day)
    if not (1 <= d <= calendar.monthrange(y, m)[1] and int(hh) < 24 and int(mm) < 60):
        return None
    if int(ss) > 60:  # 60: a leap second
        return None
    return float(calendar.timegm((y, m, d, int(hh), int(mm), int(ss), 0, 1, 0)))


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def field_names(value: str | None) -> list[str]:
    if not value:
        return []
    return [n.strip().lower() for n in value.split(",") if n.strip()]


@dataclass(frozen=True)
class Policy:
    """What a stored response allows; computed once per response, on the miss path."""

    storable: bool
    lifetime: float
    no_cache: bool  # must validate before every reuse
    stale_forbidden: bool  # must-revalidate / proxy-revalidate / no-cache: never serve stale
    s_maxage: bool  # implies proxy-revalidate: no max-stale; explicit swr/sie still apply
    swr: float  # stale-while-revalidate seconds (0 = not allowed)
    sie: float  # stale-if-error seconds (0 = not allowed)
    strip: tuple[str, ...] = ()  # fields named by private="..." / no-cache="..." left out
    reason: str = ""


def targeted_directives(headers: Headers, targets: tuple[str, ...]) -> dict[str, str | None] | None:
    """RFC 9213: the first field of the target list with a valid, non-empty value, as
    Cache-Control-style directives; None when there is none (Cache-Control applies)."""
    for name in targets:
        raw = headers.get(name.encode("latin-1"))
        if raw is None or not raw.strip():
            continue
        field = Dictionary()
        try:
            field.parse(raw)
        except ValueError:
            continue  # a parse error: the field is ignored, as if absent
        directives: dict[str, str | None] = {}
        for key, member in field.items():
            if isinstance(member, InnerList):
                directives[key] = ", ".join(str(item.value) for item in member)
                continue
            value = member.value
            if value is True:
                directives[key] = None
            elif value is not False:  # ?0 means the directive is absent
                directives[key] = str(value)
        if directives:
            return directives
    return None


def response_policy(
    method: str,
    status: int,
    headers: Headers,
    request_cc: dict[str, str | None],
    has_authorization: bool,
    heuristic_fraction: float = 0.1,
    heuristic_max: float = 86400.0,
    response_time: float | None = None,
    targets: tuple[str, ...] = ("cdn-cache-control",),
) -> Policy:
    """RFC 9111 section 3 (storing) and 4.2.1/4.2.2 (freshness) for a shared cache.

    A targeted field (RFC 9213) replaces Cache-Control, Expires and Surrogate-Control.
    """
    targeted = targeted_directives(headers, targets) if targets else None
    surrogate: dict[str, str | None] = {}
    if targeted is not None:
        cc = targeted
        headers = {k: v for k, v in headers.items() if k != b"expires"}
    else:
        cc = parse_cache_control(headers.get(b"cache-control"))
        surrogate = parse_cache_control(headers.get(b"surrogate-control"))
    if "max-age" in surrogate:
        # Edge Architecture 1.0: Surrogate-Control speaks to us and wins over Cache-Control.
        cc = {k: v for k, v in cc.items() if k not in _SURROGATE_OVERRIDES}
        cc["s-maxage"] = surrogate["max-age"]
        for name in ("stale-while-revalidate", "stale-if-error"):
            if name in surrogate:
                cc[name] = surrogate[name]
    lifetime = freshness_lifetime(
        cc, headers, status, heuristic_fraction, heuristic_max, response_time
    )
    # Qualified no-cache="F" (RFC 9111 5.2.2.4): reusable once the named fields are left out.
    qualified_no_cache = field_names(cc.get("no-cache"))
    no_cache = "no-cache" in cc and not qualified_no_cache
    stale_forbidden = no_cache or "must-revalidate" in cc or "proxy-revalidate" in cc
    swr = float(delta_seconds(cc.get("stale-while-revalidate")) or 0)
    sie = float(delta_seconds(cc.get("stale-if-error")) or 0)
    strip: tuple[str, ...] = ()
    reason = ""
    if method != "GET":
        reason = "method"
    elif not 200 <= status <= 599 or status in (206, 304):
        reason = "status"
    elif "must-understand" in cc and status not in UNDERSTOOD_STATUSES:
        reason = "must-understand"
    elif "no-store" in surrogate:
        reason = "surrogate-no-store"
    elif "no-store" in cc or "no-store" in request_cc:
        reason = "no-store"
    elif "private" in cc and not cc["private"]:
        reason = "private"
    elif has_authorization and not ("public" in cc or "s-maxage" in cc or "must-revalidate" in cc):
        reason = "authorization"
    elif b"*" in [v.strip() for v in headers.get(b"vary", b"").split(b",")]:
        reason = "vary-star"
    elif not (
        "public" in cc
        or "max-age" in cc
        or "s-maxage" in cc
        or b"expires" in headers
        or status in HEURISTIC_STATUSES
        or "no-cache" in cc
    ):
        reason = "no-explicit-freshness"
    if not reason:
        strip = tuple(field_names(cc.get("private")) + qualified_no_cache)
    if not reason and b"set-cookie" in headers and "set-cookie" not in strip:
        # A cookie is a per-user credential: never hand it to another client from the cache.
        reason = "set-cookie"
    return Policy(
        storable=not reason,
        lifetime=lifetime,
        no_cache=no_cache,
        stale_forbidden=stale_forbidden,
        s_maxage="s-maxage" in cc,
        swr=swr,
        sie=sie,
        strip=strip,
        reason=reason,
    )


def freshness_lifetime(
    cc: dict[str, str | None],
    headers: Headers,
    status: int,
    heuristic_fraction: float = 0.1,
    heuristic_max: float = 86400.0,
    response_time: float | None = None,
) -> float:
    """s-maxage, then max-age, then Expires - Date, then a heuristic where allowed."""
    if "s-maxage" in cc:
        return float(delta_seconds(cc["s-maxage"]) or 0)
    if "max-age" in cc:
        return float(delta_seconds(cc["max-age"]) or 0)
    date = parse_http_date(headers.get(b"date"))
    if date is None:
        date = response_time
    if b"expires" in headers:
        expires = parse_http_date(headers.get(b"expires"))
        if expires is None or date is None:
            return 0.0
        return max(0.0, expires - date)
    if status in HEURISTIC_STATUSES or "public" in cc:
        last_modified = parse_http_date(headers.get(b"last-modified"))
        if last_modified is not None and date is not None and date > last_modified:
            return min(heuristic_max, (date - last_modified) * heuristic_fraction)
    return 0.0


def corrected_initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """RFC 9111 4.2.3."""
    age_value = float(age_field(headers) or 0)
    date = parse_http_date(headers.get(b"date"))
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    response_delay = max(0.0, response_time - request_time)
    return max(apparent_age, age_value + response_delay)


def age_field(headers: Headers) -> int | None:
    """RFC 9111 5.1: the first member of a list-based Age; invalid (not a non-negative
    integer) is ignored, i.e. None."""
    raw = headers.get(b"age")
    if raw is None:
        return None
    return delta_seconds(raw.split(b",", 1)[0].decode("latin-1"))


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def etag_matches(if_none_match: bytes, etag: bytes | None) -> bool:
    """Weak comparison (RFC 9110 13.1.2)."""
    if if_none_match.strip() == b"*":
        return etag is not None
    if etag is None:
        return False
    want = _opaque(etag)
    return any(_opaque(t) == want for t in if_none_match.split(b",") if t.strip())


def _opaque(tag: bytes) -> bytes:
    tag = tag.strip()
    return tag[2:] if tag.startswith(b"W/") else tag
