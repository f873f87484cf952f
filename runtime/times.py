"""Times as the CLI and CSV files write them, to and from integer nanoseconds since the Unix epoch.

Accepted TIME forms (`--from`, `--to`):
  * ISO-8601 date:      2024-01-31                      (midnight UTC)
  * ISO-8601 datetime:  2024-01-31T12:00, 2024-01-31 12:00:05.123456789
                        with `Z` or an offset (+02:00, -0500); without one the time is UTC
  * epoch nanoseconds:  1706702400000000000             (an integer)

CSV time cells accept the same ISO forms, US dates (MM/DD/YYYY, optionally followed by HH:MM[:SS]; UTC), or epoch
numbers whose unit is forced (`s`, `ms`, `us`, `ns`) or, with `auto`, chosen by magnitude of the absolute value:
  < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, otherwise nanoseconds
(unambiguous for dates between 1973 and 5138; fractional epoch values are allowed, e.g. 1706702400.5).
Any other shape is read with an explicit strptime format (`parse_formatted`, `tape ingest csv --time-format`).

Timeframes are a count and a unit: s, m (minutes), h, d, w (weeks) or M (calendar months, as Binance writes
them). A month has no fixed length: `parse_timeframe` gives its average (30.436875 days, for rates and ages) and
`bar_close` the exact close of a bar (the same day and time, N calendar months later).
"""
from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from schemas.errors import TapeError

NS = 1_000_000_000
TIME_FORMATS = "ISO-8601 (2024-01-31, 2024-01-31T12:00:00Z, 2024-01-31T14:00+02:00) or integer epoch nanoseconds"
UNITS = {"s": NS, "ms": 1_000_000, "us": 1_000, "ns": 1}
DAY = 86400 * NS
MONTH = 2_629_746 * NS  # the average Gregorian month: 365.2425 days / 12
TIMEFRAME_UNITS = {"s": NS, "m": 60 * NS, "h": 3600 * NS, "d": DAY, "w": 7 * DAY, "M": MONTH}

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_INT = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_TIMEFRAME = re.compile(r"^(\d+)([smhdwM])$")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


class BadTime(TapeError):
    """A time value that none of the accepted formats reads."""


class TimeOutOfRange(BadTime):
    """A well-formed time that nanoseconds since 1970 in 64 bits cannot hold."""


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
    ns = int(value) if _INT.match(value) else parse_iso(value)
    if ns is None:
        raise BadTime(f"bad time {text!r}: use {TIME_FORMATS}")
    if not -(1 << 63) <= ns < 1 << 63:
        raise TimeOutOfRange(f"time {text!r} is beyond what a time can be (nanoseconds since 1970 reach 2262-04-11); "
                      "give an earlier one, or leave the option out for 'up to what is committed'")
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


def parse_us_date(text: str) -> int | None:
    """MM/DD/YYYY [HH:MM[:SS]] (UTC) to epoch ns; None if not slash-shaped; ValueError naming the fix if invalid."""
    m = _US_DATE.match(text.strip())
    if m is None:
        return None
    mo, d, y, hh, mi, ss = (int(g or 0) for g in m.groups())
    try:
        datetime(y, mo, d, hh, mi, ss)
    except ValueError:
        raise ValueError(
            f"{text.strip()!r} is not a MM/DD/YYYY date; for day-first dates pass --time-format %d/%m/%Y"
        ) from None
    return calendar.timegm((y, mo, d, hh, mi, ss, 0, 0, 0)) * NS


def parse_cell_time(text: str, unit: str = "auto") -> int | None:
    """A CSV time cell: ISO-8601, MM/DD/YYYY or an epoch number; None if none of them."""
    ns = parse_epoch(text, unit)
    if ns is None:
        ns = parse_iso(text)
    return ns if ns is not None else parse_us_date(text)


def parse_formatted(text: str, fmt: str) -> int:
    """A time cell read with a strptime format (naive = UTC, %z honoured) to epoch ns; ValueError if it does not fit."""
    try:
        moment = datetime.strptime(text.strip(), fmt)
    except ValueError:
        raise ValueError(f"{text.strip()!r} does not match --time-format {fmt!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    seconds = calendar.timegm(moment.timetuple())
    return seconds * NS + moment.microsecond * 1_000


def parse_timeframe(text: str) -> int:
    """A bar timeframe such as 1s, 1m, 5m, 1h, 4h, 1d, 1w, 1M to ns (a month: its average length, see above)."""
    m = _TIMEFRAME.match(text.strip())
    if m is None or int(m.group(1)) == 0:
        raise BadTime(
            f"bad timeframe {text!r}: use a count and a unit s, m, h, d, w or M (months): 1m, 5m, 1h, 1d, 1w, 1M"
        )
    return int(m.group(1)) * TIMEFRAME_UNITS[m.group(2)]


def timeframe_months(text: str) -> int:
    """Calendar months of a timeframe (1M → 1, 3M → 3); 0 for a fixed-length one, whose close is open + length."""
    m = _TIMEFRAME.match(text.strip())
    return int(m.group(1)) if m is not None and m.group(2) == "M" else 0


def add_months(ns: int, months: int) -> int:
    """The same day and time of day `months` calendar months later (the day clamped to the month's last)."""
    seconds, frac = divmod(ns, NS)
    moment = datetime(1970, 1, 1) + timedelta(seconds=seconds)
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    shifted = moment.replace(year=year, month=month + 1, day=day)
    return calendar.timegm(shifted.timetuple()) * NS + frac


def bar_close(open_ns: int, timeframe: str) -> int:
    """When a bar opened at `open_ns` closes: open + length, or N calendar months on for a monthly timeframe."""
    months = timeframe_months(timeframe)
    return add_months(open_ns, months) if months else open_ns + parse_timeframe(timeframe)


def timeframe_text(ns: int) -> str:
    """A length as a timeframe people pass (60 s → 1m, 1 day → 1d, 28..31 days → 1M); '' when none fits."""
    if 28 * DAY <= ns <= 31 * DAY:
        return "1M"
    for unit in ("w", "d", "h", "m", "s"):
        size = TIMEFRAME_UNITS[unit]
        if ns > 0 and ns % size == 0:
            return f"{ns // size}{unit}"
    return ""


def format_ns(ns: int) -> str:
    """ISO-8601 UTC with as many fraction digits as needed (0, 3, 6 or 9): 2024-01-31T12:00:00.5Z → .500Z."""
    seconds, frac = divmod(ns, NS)
    try:
        base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
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
