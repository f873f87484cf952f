"""Exact numbers: the decimal(38,18) contract of every price, quantity and amount, and its one exact text.

Every fold does its arithmetic in `ARITHMETIC` (60 significant digits, so a product or quotient of two 18-place
numbers is exact, or rounded far below the 18th place, before it is quantized to `Q18`). `EXACT` is for the
operations that must never round at all: normalize and quantize (Python's default context has 28 digits, and
`Decimal.normalize()` in it rounds a decimal(38,18) value).
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

SCALE = 18  # decimal places of every decimal in the schemas
PRECISION = 38  # digits of every decimal in the schemas
Q18 = Decimal(1).scaleb(-SCALE)
ZERO = Decimal(0)
ONE = Decimal(1)
ARITHMETIC = Context(prec=60, rounding=ROUND_HALF_EVEN)
EXACT = Context(prec=100, rounding=ROUND_HALF_EVEN)


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
