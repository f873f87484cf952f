"""The risk limits: a config dict (as read from TOML/JSON, or as a run recorded it) validated once into RiskLimits.

Every limit is optional (None: its rule is off). Errors are one line naming the key, with a hint for a misspelling.
`RiskLimits.canonical()` is the form a run records in RunStarted, and parses back to the same limits.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from projections.risk import RATE_MEMORY
from schemas.decimals import ONE as _ONE
from schemas.errors import TapeError

CONFIG_KEYS = ("max_order_quantity", "max_order_notional", "max_position", "max_gross_exposure", "price_band",
               "max_open_orders", "order_rate", "order_rate_window", "daily_loss_limit", "max_drawdown",
               "allowed_instruments")


class RiskConfigError(TapeError):
    """A risk config value that cannot be used."""


@dataclass(frozen=True)
class RiskLimits:
    """A validated risk config: None means the rule is off."""

    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position: Decimal | None = None
    max_position_per_instrument: tuple[tuple[str, Decimal], ...] = ()
    max_gross_exposure: Decimal | None = None
    price_band: Decimal | None = None
    max_open_orders: int | None = None
    order_rate: int | None = None
    order_rate_window: Decimal = _ONE
    daily_loss_limit: Decimal | None = None
    max_drawdown: Decimal | None = None
    allowed_instruments: tuple[str, ...] | None = None

    def canonical(self) -> dict[str, Any]:
        """The limits that are on, as a config dict: what RunStarted records; parse_risk_config reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "max_position_per_instrument":
                continue
            if f.name == "order_rate_window" and (self.order_rate is None or v == _ONE):
                continue
            if f.name == "max_position" and self.max_position_per_instrument:
                table = dict(self.max_position_per_instrument)
                if v is not None:
                    table["default"] = v
                out["max_position"] = table
            elif f.name == "allowed_instruments" and v is not None:
                out[f.name] = list(v)
            elif v is not None:
                out[f.name] = v
        return out


def _number(src: str, key: str, v: Any, *, strict_positive: bool = True) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, str)):
        raise RiskConfigError(f"{src}: {key} must be a number, got {v!r}")
    try:
        d = Decimal(str(v)) if not isinstance(v, Decimal) else v
    except InvalidOperation:
        raise RiskConfigError(f"{src}: {key} must be a number, got {v!r}") from None
    if not d.is_finite() or (d <= 0 if strict_positive else d < 0):
        raise RiskConfigError(f"{src}: {key} must be a positive number, got {v!r}")
    return d


def _integer(src: str, key: str, v: Any, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (hi is not None and v > hi):
        top = f" up to {hi}" if hi is not None else ""
        raise RiskConfigError(f"{src}: {key} must be a whole number from 1{top}, got {v!r}")
    return v


def _unknown(src: str, keys: Any, known: tuple[str, ...]) -> None:
    for k in keys:
        if k not in known:
            near = difflib.get_close_matches(str(k), known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; known keys: {', '.join(known)}"
            raise RiskConfigError(f"{src}: unknown key {k!r}{hint}")


def parse_risk_config(config: dict[str, Any], source: str = "risk config") -> RiskLimits:
    """Validate a risk config dict (as parsed from TOML/JSON) into typed limits; one-line errors."""
    if not isinstance(config, dict):
        raise RiskConfigError(f"{source}: expected a table of limits, got {type(config).__name__}")
    _unknown(source, config, CONFIG_KEYS)
    c = config
    out: dict[str, Any] = {}
    for key in ("max_order_quantity", "max_order_notional", "max_gross_exposure", "price_band", "daily_loss_limit",
                "max_drawdown", "order_rate_window"):
        if key in c:
            out[key] = _number(source, key, c[key])
    if "max_drawdown" in out and out["max_drawdown"] > 1:
        raise RiskConfigError(f"{source}: max_drawdown is a fraction of peak equity (0.2 = 20%), "
                              f"got {c['max_drawdown']!r}")
    if "max_open_orders" in c:
        out["max_open_orders"] = _integer(source, "max_open_orders", c["max_open_orders"])
    if "order_rate" in c:
        out["order_rate"] = _integer(source, "order_rate", c["order_rate"], RATE_MEMORY)
    elif "order_rate_window" in c:
        raise RiskConfigError(f"{source}: order_rate_window needs order_rate (orders allowed per window)")
    if "order_rate_window" in out and (out["order_rate_window"] * 1_000_000_000) % 1:
        raise RiskConfigError(f"{source}: order_rate_window must be a whole number of nanoseconds")
    if "max_position" in c:
        mp = c["max_position"]
        if isinstance(mp, dict):
            per = []
            for iid, v in mp.items():
                if iid == "default":
                    out["max_position"] = _number(source, "max_position.default", v)
                else:
                    per.append((str(iid), _number(source, f"max_position.{iid}", v)))
            out["max_position_per_instrument"] = tuple(per)
        else:
            out["max_position"] = _number(source, "max_position", mp)
    if "allowed_instruments" in c:
        al = c["allowed_instruments"]
        if not isinstance(al, list) or not all(isinstance(x, str) and x for x in al):
            raise RiskConfigError(f"{source}: allowed_instruments must be a list of instrument ids, got {al!r}")
        out["allowed_instruments"] = tuple(al)
    return RiskLimits(**out)
