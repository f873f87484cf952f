"""Times as the CLI and CSV files write them, to and from integer nanoseconds since the Unix epoch.

Accepted TIME forms (`--from`, `--to`):
  * ISO-8601 date:      2024-01-31                      (midnight UTC)
  * ISO-8601 datetime:  2024-01-31T12:00, 2024-01-31 12:00:05.123456789
                        with `Z` or an offset (+02:00, -0500); without one the time is UTC
  * epoch nanoseconds:  1706702400000000000             (an integer)

CSV time cells accept the same ISO forms, or epoch numbers whose unit is forced (`s`, `ms`, `us`, `ns`)
or, with `auto`, chosen by magnitude of the absolute value:
  < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, otherwise nanoseconds
(unambiguous for dates between 1973 and 5138; fractional epoch values are allowed, e.g. 1706702400.5).
"""
from __future__ import annotations

import calendar
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from schemas.errors import TapeError

NS = 1_000_000_000
TIME_FORMATS = "ISO-8601 (2024-01-31, 2024-01-31T12:00:00Z, 2024-01-31T14:00+02:00) or integer epoch nanoseconds"
UNITS = {"s": NS, "ms": 1_000_000, "us": 1_000, "ns": 1}
TIMEFRAME_UNITS = {"s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS, "w": 7 * 86400 * NS}

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_INT = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_TIMEFRAME = re.compile(r"^(\d+)([smhdw])$")


class BadTime(TapeError):
    """A time value that none of the accepted formats reads."""


def parse_iso(text: str) -> int | None:
    """ISO-8601 date or datetime to epoch ns (naive = UTC); None if the text is not ISO-shaped."""
    m = _ISO.match(text.strip())
    if m is None:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))  # validates ranges
    except ValueError:
        return None
    seconds = calendar.timegm((int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), 0, 0, 0))
    if tz and tz not in "Zz":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return None
        seconds -= sign * (hours * 3600 + minutes * 60)
    return seconds * NS + int((frac or "").ljust(9, "0"))


def parse_time(text: str) -> int:
    """A CLI TIME: ISO-8601 or integer epoch nanoseconds."""
    value = text.strip()
    if _INT.match(value):
        return int(value)
    ns = parse_iso(value)
    if ns is None:
        raise BadTime(f"bad time {text!r}: use {TIME_FORMATS}")
    return ns


def auto_unit(magnitude: Decimal) -> str:
    """The epoch unit a number most likely uses, from its size (see module doc)."""
    magnitude = abs(magnitude)
    if magnitude < Decimal("1e11"):
        return "s"
    if magnitude < Decimal("1e14"):
        return "ms"
    if magnitude < Decimal("1e17"):
        return "us"
    return "ns"


def parse_epoch(text: str, unit: str = "auto") -> int | None:
    """An epoch number in the given unit (or auto) to ns; None if the text is not a plain number.

    Raises ValueError when the number has digits below a nanosecond.
    """
    value = text.strip()
    if not _NUMBER.match(value):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    factor = UNITS[auto_unit(number) if unit == "auto" else unit]
    ns = number * factor
    if ns != ns.to_integral_value():
        raise ValueError(f"{text.strip()!r} has digits below a nanosecond")
    return int(ns)


def parse_cell_time(text: str, unit: str = "auto") -> int | None:
    """A CSV time cell: ISO-8601 or an epoch number; None if neither."""
    ns = parse_epoch(text, unit)
    return ns if ns is not None else parse_iso(text)


def parse_timeframe(text: str) -> int:
    """A bar timeframe such as 1s, 1m, 5m, 1h, 4h, 1d, 1w to ns."""
    m = _TIMEFRAME.match(text.strip())
    if m is None or int(m.group(1)) == 0:
        raise BadTime(f"bad timeframe {text!r}: use a count and a unit s, m, h, d or w (1m, 5m, 1h, 1d)")
    return int(m.group(1)) * TIMEFRAME_UNITS[m.group(2)]


def format_ns(ns: int) -> str:
    """ISO-8601 UTC with as many fraction digits as needed (0, 3, 6 or 9): 2024-01-31T12:00:00.5Z → .500Z."""
    seconds, frac = divmod(ns, NS)
    try:
        base = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ns)
    if frac == 0:
        return base + "Z"
    digits = f"{frac:09d}"
    for width in (3, 6):
        if digits[width:] == "0" * (9 - width):
            return f"{base}.{digits[:width]}Z"
    return f"{base}.{digits}Z"


def human_ns(ns: int | None) -> str:
    """A duration in ns as people read it: 0, 850 ns, 12.5 µs, 3.2 ms, 60 s, 13d 20h 48m."""
    if ns is None:
        return ""
    sign, n = ("-", -ns) if ns < 0 else ("", ns)
    if n == 0:
        return "0"
    if n < 1_000:
        return f"{sign}{n} ns"
    for unit, size in (("µs", 1_000), ("ms", 1_000_000)):
        if n < size * 1_000:
            return f"{sign}{_trim(n / size)} {unit}"
    if n <= 60_000_000_000:
        return f"{sign}{_trim(n / 1_000_000_000)} s"
    seconds = n // 1_000_000_000
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m"), (seconds % 60, "s")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    return sign + " ".join(f"{v}{u}" for v, u in parts[:3] if v)


def _trim(x: float) -> str:
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return text or "0"
