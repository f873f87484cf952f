"""Exact numbers: the decimal(38,18) contract of every price, quantity and amount, and its one exact text.

Every fold does its arithmetic in `ARITHMETIC` (60 significant digits, so a product or quotient of two 18-place
numbers is exact, or rounded far below the 18th place, before it is quantized to `Q18`). `EXACT` is for the
operations that must never round at all: normalize and quantize (Python's default context has 28 digits, and
`Decimal.normalize()` in it rounds a decimal(38,18) value).
"""
from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

SCALE = 18  # decimal places of every decimal in the schemas
PRECISION = 38  # digits of every decimal in the schemas
Q18 = Decimal(1).scaleb(-SCALE)
ZERO = Decimal(0)
ONE = Decimal(1)
ARITHMETIC = Context(prec=60, rounding=ROUND_HALF_EVEN)
EXACT = Context(prec=100, rounding=ROUND_HALF_EVEN)
MAX_SCALE, MAX_INT_DIGITS = SCALE, PRECISION - SCALE
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def q18(value: Decimal) -> Decimal:
    """`value` at 18 places, half-even: how every amount a fold computes is stored."""
    return value.quantize(Q18, context=EXACT)


def as_logged(value: Any) -> Any:
    """A payload's decimals as the log gives them back (18 places), so an input a live session processes is the
    input its replay processes — the same value and the same text. A decimal with more places is left as it is (the
    writer refuses it, naming the field)."""
    if isinstance(value, Decimal):
        q = value.quantize(Q18, context=EXACT) if value.is_finite() else value
        return q if q == value else value
    if isinstance(value, dict):
        return {k: as_logged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_logged(v) for v in value]
    return value


def exact_text(d: Decimal) -> str:
    """Exact, normalized, never in exponent form: Decimal('50000.500000000000000000') → '50000.5'."""
    if d.is_zero():
        return "0"
    return format(EXACT.normalize(d), "f")


def text(value: Any, none: str = "") -> str:
    """A value as people read it: a Decimal as exact text, None as `none`, anything else as str()."""
    if value is None:
        return none
    if isinstance(value, Decimal):
        return exact_text(value)
    return str(value)


def plain(value: Any) -> Any:
    """A decoded value as JSON-safe data: Decimal → exact text, bytes → hex, containers recursively."""
    if isinstance(value, Decimal):
        return exact_text(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces, Decimals as exact text): what the log records of a config,
    and what a run's content address hashes."""
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def parse_decimal(text: str) -> tuple[Decimal, int]:
    """A decimal(38,18) read from text — a CSV cell, a parameter: (value, decimals without trailing zeros);
    ValueError with a message for anything else (not a number, nan, inf, too large, too many places)."""
    t = text.strip()
    if not t:
        raise ValueError("is empty; a number is required")
    m = _DECIMAL.match(t)
    if not m:
        raise ValueError(f"{text!r} is not a number")
    if m.group(3) is None:  # plain notation: decide from the text alone (the common, fast case)
        whole, _, frac = t.lstrip("+-").partition(".")
        dp = len(frac.rstrip("0"))
        if dp > MAX_SCALE:
            raise ValueError(f"{text!r} has more than {MAX_SCALE} decimal places")
        if len(whole.lstrip("0")) > MAX_INT_DIGITS:
            raise ValueError(f"{text!r} is too large (more than {MAX_INT_DIGITS} integer digits)")
        value = Decimal(t)
        return (value if len(frac) <= MAX_SCALE else EXACT.normalize(value)), dp
    try:
        value = Decimal(t)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a number")
    normal = EXACT.normalize(value)
    exponent = normal.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -MAX_SCALE:
        raise ValueError(f"{text!r} has more than {MAX_SCALE} decimal places")
    if normal and normal.adjusted() + 1 > MAX_INT_DIGITS:
        raise ValueError(f"{text!r} is too large (more than {MAX_INT_DIGITS} integer digits)")
    if value.as_tuple().exponent < -MAX_SCALE:  # type: ignore[operator]
        value = normal
    return value, max(0, -exponent)
