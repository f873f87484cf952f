"""The simulated venue's settings: a config dict (as read from TOML/JSON, or as a run recorded it) parsed once.

Every key is optional; see handlers/venues/sim/venue.py for what each one does. Errors are one line naming the key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from handlers.venues.sim.fills import MAKER
from schemas.decimals import ONE as _ONE
from schemas.errors import TapeError

CONFIG_KEYS = ("name", "starting_balances", "latency_ms", "latency_ns", "market_fill", "volume_participation",
               "maker_fee", "taker_fee", "allow_rebates", "account_type", "leverage", "emit_account_state",
               "report_currency")


class VenueConfigError(TapeError):
    """The simulated venue's configuration has an unknown key or a value it cannot use."""


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """The validated configuration (see the module docstring for the meaning of each key)."""

    name: str = "SIM"
    starting_balances: dict[str, Decimal] | None = None
    latency_ns: int = 0
    market_fill: str = "next_open"
    volume_participation: Decimal | None = _ONE  # None: no volume cap
    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None
    account_type: str = "cash"
    leverage: Decimal = _ONE
    emit_account_state: bool = False
    report_currency: str | None = None  # read by the research runtime for statistics; not by the venue
    allow_rebates: bool = False  # a negative maker/taker fee (a rebate) is meant, not a sign typed wrong

    def fee_rate(self, inst: Any, liquidity: str) -> Decimal:
        """The fee rate of a fill: this config's maker/taker rate, else the instrument's."""
        if liquidity == MAKER:
            return self.maker_fee if self.maker_fee is not None else inst.maker_fee
        return self.taker_fee if self.taker_fee is not None else inst.taker_fee

    def canonical(self) -> dict[str, Any]:
        """The settings as a config dict (every key, latency in ns): what RunStarted records; parse reads it back."""
        out: dict[str, Any] = {"name": self.name, "latency_ns": self.latency_ns, "market_fill": self.market_fill,
                               "volume_participation": ("unlimited" if self.volume_participation is None
                                                        else self.volume_participation),
                               "account_type": self.account_type, "leverage": self.leverage,
                               "emit_account_state": self.emit_account_state}
        for key in ("starting_balances", "maker_fee", "taker_fee", "report_currency"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dict(value) if key == "starting_balances" else value
        if self.allow_rebates:  # only when set: the configs (and ids) of runs without it stay as they were
            out["allow_rebates"] = True
        return out


def _decimal(value: Any, what: str, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise VenueConfigError(f"{where}: {what} must be a number or a decimal string, e.g. \"0.001\"; got {value!r}")
    try:
        d = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise VenueConfigError(f"{where}: {what} = {value!r} is not a decimal number; write it like "
                               f"\"0.001\"") from None
    if not d.is_finite():
        raise VenueConfigError(f"{where}: {what} = {value!r} must be finite")
    if d.as_tuple().exponent < -18:  # type: ignore[operator]
        raise VenueConfigError(f"{where}: {what} = {value!r} has more than 18 decimal places; round it")
    return d


def _normalize(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Validated, typed copy of the keys given (Decimals for amounts and rates); raises VenueConfigError."""
    if not isinstance(raw, dict):
        raise VenueConfigError(f"{where}: must be a table/object of settings, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key in raw:
        if key not in CONFIG_KEYS:
            raise VenueConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(CONFIG_KEYS)}")
    for key, value in raw.items():
        if key in ("name", "report_currency"):
            if not isinstance(value, str) or not value.strip():
                raise VenueConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
            out[key] = value
        elif key == "starting_balances":
            if not isinstance(value, dict):
                raise VenueConfigError(f"{where}: starting_balances must be a table of currency = \"amount\", "
                                       f"e.g. {{ USDT = \"10000\" }}")
            bal = {}
            for cur, amount in value.items():
                if not isinstance(cur, str) or not cur:
                    raise VenueConfigError(f"{where}: starting_balances has an empty currency name")
                bal[cur] = _decimal(amount, f"starting_balances.{cur}", where)
                if bal[cur] < 0:
                    raise VenueConfigError(f"{where}: starting_balances.{cur} = {amount!r} is negative; a starting "
                                           "balance is what the account holds, 0 or more")
            out[key] = bal
        elif key in ("latency_ms", "latency_ns"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    isinstance(value, float) and not math.isfinite(value)) or value < 0:
                raise VenueConfigError(f"{where}: {key} must be a number >= 0, got {value!r}")
            if key == "latency_ns" and not isinstance(value, int):
                raise VenueConfigError(f"{where}: latency_ns must be a whole number of nanoseconds, got {value!r}")
            out[key] = value
        elif key == "market_fill":
            if value not in ("next_open", "same_close"):
                raise VenueConfigError(f"{where}: market_fill must be \"next_open\" or \"same_close\", got {value!r}")
            out[key] = value
        elif key == "volume_participation":
            if value is None or value == "unlimited":
                out[key] = "unlimited"
                continue
            d = _decimal(value, key, where)
            if not (0 < d <= 1):
                raise VenueConfigError(f"{where}: volume_participation must be in (0, 1] or \"unlimited\", "
                                       f"got {value!r}")
            out[key] = d
        elif key in ("maker_fee", "taker_fee"):
            d = _decimal(value, key, where)
            if not (-1 < d < 1):
                raise VenueConfigError(f"{where}: {key} is a rate (0.001 = 0.1%), got {value!r}")
            out[key] = d
        elif key == "account_type":
            if value not in ("cash", "margin"):
                raise VenueConfigError(f"{where}: account_type must be \"cash\" or \"margin\", got {value!r}")
            out[key] = value
        elif key == "leverage":
            d = _decimal(value, key, where)
            if d <= 0:
                raise VenueConfigError(f"{where}: leverage must be > 0, got {value!r}")
            out[key] = d
        elif key in ("emit_account_state", "allow_rebates"):
            if not isinstance(value, bool):
                raise VenueConfigError(f"{where}: {key} must be true or false, got {value!r}")
            out[key] = value
    if "latency_ms" in out and "latency_ns" in out:
        raise VenueConfigError(f"{where}: give latency_ms or latency_ns, not both")
    return out


def parse_venue_config(raw: dict[str, Any] | None, where: str = "venue config") -> VenueConfig:
    """The typed configuration from a dict (as loaded, or as recorded); raises VenueConfigError naming the key."""
    c = _normalize(raw or {}, where)
    latency = c.get("latency_ns", 0)
    if "latency_ms" in c:
        latency = int(Decimal(str(c["latency_ms"])) * 1_000_000)
    part = c.get("volume_participation", _ONE)
    for key in ("maker_fee", "taker_fee"):
        if c.get(key) is not None and c[key] < 0 and not c.get("allow_rebates", False):
            raise VenueConfigError(f"{where}: {key} = {str(c[key])!r} is negative (a rebate): set allow_rebates = "
                                   "true if the venue pays it, else give the fee as a positive rate")
    return VenueConfig(name=c.get("name", "SIM"), starting_balances=c.get("starting_balances"), latency_ns=latency,
                       market_fill=c.get("market_fill", "next_open"),
                       volume_participation=None if part == "unlimited" else part,
                       maker_fee=c.get("maker_fee"), taker_fee=c.get("taker_fee"),
                       account_type=c.get("account_type", "cash"), leverage=c.get("leverage", _ONE),
                       emit_account_state=c.get("emit_account_state", False),
                       report_currency=c.get("report_currency"), allow_rebates=c.get("allow_rebates", False))
