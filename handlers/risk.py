"""The risk engine: every order intent gets RiskAccepted or RiskRejected naming the rule, the limit and the value.

Rules run in this fixed order and the first that fails decides (instrument rules before limits, so a malformed
order is named as such, and the trading state first, so a halted runtime rejects every order by that rule):

  trading_state         ACTIVE: all; REDUCING: only orders that reduce the position without flipping it, counting
                        open and unsent orders on the same side (reduce_only orders pass); HALTED: none.
                        limit = the state, value = the position the order would lead to. Cancels always pass.
  allowed_instruments   instrument in the configured allow-list (config: allowed_instruments = [...]).
  unknown_instrument    an InstrumentDefined event describes the instrument.
  invalid_order         quantity > 0; a price for LIMIT/STOP_LIMIT, a trigger price for STOP_*; both > 0.
  quantity_precision    quantity is a multiple of the instrument's size_increment.
  price_precision       price and trigger price are multiples of price_increment.
  min_quantity          quantity >= the instrument's min_quantity.
  instrument_max_quantity  quantity <= the instrument's max_quantity (when it has one).
  last_price            a last price is known when a rule needs it (market orders with any of price_band,
                        max_order_notional, max_gross_exposure; every order with price_band).
  min_notional          quantity x price x multiplier >= the instrument's min_notional.
  price_band            limit and trigger prices within last x (1 ± price_band); market orders use the last price.
  max_order_quantity    quantity <= limit.
  max_order_notional    quantity x price x multiplier <= limit (price: limit price, trigger for STOP_MARKET,
                        last price for MARKET).
  max_position          |position after the order| <= limit (base units; one number, or a table per instrument
                        with an optional `default`). Conservative: the order is assumed filled together with
                        every open order and every accepted-but-unsent order on the same side. Orders that only
                        bring the position toward zero (without flipping it) and reduce_only orders always pass.
  max_gross_exposure    gross exposure (portfolio.gross_exposure in the instrument's settlement currency) after
                        the order, projected like max_position and valued at the last price, <= limit.
  max_open_orders       open orders + accepted-but-unsent + this one <= limit.
  order_rate            orders accepted in the last `order_rate_window` seconds of event time (ts in
                        (now - window, now]) + this one <= order_rate.

Limits compare inclusively: a value equal to its limit passes. `evaluate` halts trading (TradingStateChanged to
HALTED, once) when the loss since the UTC day's start equity reaches daily_loss_limit (money, in the equity
currency of RiskState) or equity falls max_drawdown (a fraction, 0.2 = 20%) below its peak. Only an operator
(a TradingStateChanged from outside) lifts a halt.
"""
from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any, ClassVar

from projections.risk import RATE_MEMORY
from schemas.decimals import ARITHMETIC as _CTX
from schemas.decimals import ONE as _ONE
from schemas.decimals import Q18, text
from schemas.decimals import ZERO as _ZERO
from schemas.errors import TapeError

RULE_ORDER = ("trading_state", "allowed_instruments", "unknown_instrument", "invalid_order", "quantity_precision",
              "price_precision", "min_quantity", "instrument_max_quantity", "last_price", "min_notional",
              "price_band", "max_order_quantity", "max_order_notional", "max_position", "max_gross_exposure",
              "max_open_orders", "order_rate")
CONFIG_KEYS = ("max_order_quantity", "max_order_notional", "max_position", "max_gross_exposure", "price_band",
               "max_open_orders", "order_rate", "order_rate_window", "daily_loss_limit", "max_drawdown",
               "allowed_instruments", "queue")


class RiskConfigError(TapeError):
    """A risk config file or value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a rule refused an order: its name, its limit and the offending value as exact text."""

    rule: str
    limit: str
    value: str
    reason: str


# ---- order arithmetic shared by the rules ---------------------------------------------------------------------


def order_price(intent: dict[str, Any], last: Decimal | None) -> Decimal | None:
    """The price an order's value is judged at: limit price, trigger for stop-market, last price for market."""
    t = intent["order_type"]
    if t == "MARKET":
        return last
    if t == "STOP_MARKET":
        return intent.get("trigger_price")
    return intent.get("price")


def position_after(intent: dict[str, Any], state: Any) -> tuple[Decimal, Decimal]:
    """(position now, position if this order and every open or unsent order on its side filled)."""
    iid, side = intent["instrument_id"], intent["side"]
    pos = state.portfolio.position_quantity(iid)
    same = intent["quantity"]
    for o in state.orders.open(iid):
        if o.side == side:
            same += o.leaves_quantity
    same += state.risk.pending_quantity(iid, side, exclude=intent["client_order_id"])
    return pos, (pos + same if side == "BUY" else pos - same)


def reduces(pos: Decimal, after: Decimal) -> bool:
    """True when `after` is closer to zero than `pos` on the same side (no flip)."""
    return (pos > 0 and 0 <= after < pos) or (pos < 0 and pos < after <= 0)


# ---- rules -------------------------------------------------------------------------------------------------------


class RiskRule:
    """One check; `check` returns a Rejection or None. Subclasses set `name`."""

    name: ClassVar[str] = "rule"

    def check(self, intent: dict[str, Any], state: Any, now: int) -> Rejection | None:
        raise NotImplementedError

    def reject(self, limit: Any, value: Any, reason: str) -> Rejection:
        return Rejection(self.name, text(limit), text(value), reason)


class TradingStateRule(RiskRule):
    name = "trading_state"

    def check(self, intent, state, now):
        ts = state.risk.trading_state
        if ts == "ACTIVE":
            return None
        if ts == "REDUCING":
            if intent.get("reduce_only"):
                return None
            pos, after = position_after(intent, state)
            if reduces(pos, after):
                return None
            return self.reject(ts, after, f"trading is REDUCING: the order would take the position from "
                                          f"{text(pos)} to {text(after)}, which does not reduce it")
        pos, after = position_after(intent, state)
        return self.reject(ts, after, f"trading is {ts}: no new orders")


class AllowedInstrumentsRule(RiskRule):
    name = "allowed_instruments"

    def __init__(self, allowed: list[str]):
        self.allowed = list(allowed)
        self._set = frozenset(allowed)

    def check(self, intent, state, now):
        iid = intent["instrument_id"]
        if iid in self._set:
            return None
        return self.reject(",".join(self.allowed), iid, f"instrument {iid} is not in the allow-list")


class UnknownInstrumentRule(RiskRule):
    name = "unknown_instrument"

    def check(self, intent, state, now):
        iid = intent["instrument_id"]
        if iid in state.market.instruments:
            return None
        return self.reject("defined", "unknown", f"instrument {iid} has no InstrumentDefined event")


class InvalidOrderRule(RiskRule):
    name = "invalid_order"

    def check(self, intent, state, now):
        qty = intent["quantity"]
        if not qty > 0:
            return self.reject(_ZERO, qty, f"quantity {text(qty)} is not positive")
        t = intent["order_type"]
        for field, needed in (("price", t in ("LIMIT", "STOP_LIMIT")),
                              ("trigger_price", t in ("STOP_MARKET", "STOP_LIMIT"))):
            p = intent.get(field)
            if needed and p is None:
                return self.reject("required", "none", f"a {t} order needs a {field}")
            if p is not None and not p > 0:
                return self.reject(_ZERO, p, f"{field} {text(p)} is not positive")
        return None


class QuantityPrecisionRule(RiskRule):
    name = "quantity_precision"

    def check(self, intent, state, now):
        inc = state.market.instruments[intent["instrument_id"]].size_increment
        qty = intent["quantity"]
        if inc > 0 and _CTX.remainder(qty, inc) != 0:
            return self.reject(inc, qty, f"quantity {text(qty)} is not a multiple of the size increment {text(inc)}")
        return None


class PricePrecisionRule(RiskRule):
    name = "price_precision"

    def check(self, intent, state, now):
        inc = state.market.instruments[intent["instrument_id"]].price_increment
        if not inc > 0:
            return None
        for field in ("price", "trigger_price"):
            p = intent.get(field)
            if p is not None and _CTX.remainder(p, inc) != 0:
                return self.reject(inc, p, f"{field} {text(p)} is not a multiple of the price increment {text(inc)}")
        return None


class MinQuantityRule(RiskRule):
    name = "min_quantity"

    def check(self, intent, state, now):
        lim = state.market.instruments[intent["instrument_id"]].min_quantity
        qty = intent["quantity"]
        if lim is not None and qty < lim:
            return self.reject(lim, qty, f"quantity {text(qty)} is below the instrument's minimum {text(lim)}")
        return None


class InstrumentMaxQuantityRule(RiskRule):
    name = "instrument_max_quantity"

    def check(self, intent, state, now):
        lim = state.market.instruments[intent["instrument_id"]].max_quantity
        qty = intent["quantity"]
        if lim is not None and qty > lim:
            return self.reject(lim, qty, f"quantity {text(qty)} is above the instrument's maximum {text(lim)}")
        return None


class LastPriceRule(RiskRule):
    name = "last_price"

    def __init__(self, every_order: bool):
        self.every_order = every_order  # price_band needs a last price for limit and stop orders too

    def check(self, intent, state, now):
        iid = intent["instrument_id"]
        if iid in state.market.last_price:
            return None
        if self.every_order or intent["order_type"] == "MARKET":
            return self.reject("known", "none", f"no last price for {iid} yet: the order's value cannot be checked")
        return None


class MinNotionalRule(RiskRule):
    name = "min_notional"

    def check(self, intent, state, now):
        inst = state.market.instruments[intent["instrument_id"]]
        lim = inst.min_notional
        if lim is None:
            return None
        px = order_price(intent, state.market.last_price.get(intent["instrument_id"]))
        if px is None:
            return None  # a market order before any price: the venue judges it
        notional = intent["quantity"] * px * inst.multiplier
        if notional < lim:
            return self.reject(lim, notional, f"order value {text(notional)} is below the instrument's minimum "
                                              f"notional {text(lim)}")
        return None


class PriceBandRule(RiskRule):
    name = "price_band"

    def __init__(self, band: Decimal):
        self.band = band

    def check(self, intent, state, now):
        last = state.market.last_price.get(intent["instrument_id"])
        if last is None:
            return None  # only reachable without the last_price rule, which price_band always enables
        hi = last * (_ONE + self.band)
        lo = last * (_ONE - self.band)
        for field in ("price", "trigger_price"):
            p = intent.get(field)
            if p is None:
                continue
            if p > hi:
                return self.reject(hi, p, f"{field} {text(p)} is more than {text(self.band)} above the last price "
                                          f"{text(last)}")
            if p < lo:
                return self.reject(lo, p, f"{field} {text(p)} is more than {text(self.band)} below the last price "
                                          f"{text(last)}")
        return None


class MaxOrderQuantityRule(RiskRule):
    name = "max_order_quantity"

    def __init__(self, limit: Decimal):
        self.limit = limit

    def check(self, intent, state, now):
        qty = intent["quantity"]
        if qty > self.limit:
            return self.reject(self.limit, qty, f"quantity {text(qty)} exceeds the limit {text(self.limit)}")
        return None


class MaxOrderNotionalRule(RiskRule):
    name = "max_order_notional"

    def __init__(self, limit: Decimal):
        self.limit = limit

    def check(self, intent, state, now):
        iid = intent["instrument_id"]
        px = order_price(intent, state.market.last_price.get(iid))
        if px is None:
            return None  # unreachable: the last_price rule runs first
        notional = intent["quantity"] * px * state.market.instruments[iid].multiplier
        if notional > self.limit:
            return self.reject(self.limit, notional, f"order value {text(notional)} exceeds the limit "
                                                     f"{text(self.limit)}")
        return None


class MaxPositionRule(RiskRule):
    name = "max_position"

    def __init__(self, default: Decimal | None, per_instrument: dict[str, Decimal]):
        self.default = default
        self.per_instrument = per_instrument

    def check(self, intent, state, now):
        if intent.get("reduce_only"):
            return None
        lim = self.per_instrument.get(intent["instrument_id"], self.default)
        if lim is None:
            return None
        pos, after = position_after(intent, state)
        if abs(after) <= lim or reduces(pos, after):
            return None
        return self.reject(lim, abs(after), f"position {text(pos)} would become {text(after)} with this and the "
                                            f"open orders on its side; the limit is ±{text(lim)}")


class MaxGrossExposureRule(RiskRule):
    name = "max_gross_exposure"

    def __init__(self, limit: Decimal):
        self.limit = limit

    def check(self, intent, state, now):
        if intent.get("reduce_only"):
            return None
        iid = intent["instrument_id"]
        inst = state.market.instruments[iid]
        pos, after = position_after(intent, state)
        if reduces(pos, after):
            return None
        mark = state.market.last_price.get(iid)
        if mark is None:
            mark = order_price(intent, None)
        gross = state.portfolio.gross_exposure(inst.settlement_currency)
        projected = gross + (abs(after) - abs(pos)) * mark * inst.multiplier
        if projected <= self.limit:
            return None
        return self.reject(self.limit, projected, f"gross exposure {text(gross)} would become {text(projected)} "
                                                  f"{inst.settlement_currency}; the limit is {text(self.limit)}")


class MaxOpenOrdersRule(RiskRule):
    name = "max_open_orders"

    def __init__(self, limit: int):
        self.limit = limit

    def check(self, intent, state, now):
        n = state.orders.open_count() + len(state.risk.pending) + 1
        if n <= self.limit:
            return None
        return self.reject(self.limit, n, f"{n} orders would be open (including accepted ones not yet sent); "
                                          f"the limit is {self.limit}")


class OrderRateRule(RiskRule):
    name = "order_rate"

    def __init__(self, count: int, window_ns: int, window_text: str):
        self.count = count
        self.window_ns = window_ns
        self.window_text = window_text

    def check(self, intent, state, now):
        times = state.risk.order_times
        n = self.count
        cutoff = now - self.window_ns
        if len(times) < n or times[-n] <= cutoff:
            return None
        inside = 0
        for t in reversed(times):
            if t <= cutoff:
                break
            inside += 1
        return self.reject(n, inside + 1, f"{inside + 1} orders in {self.window_text}s of event time; the limit is "
                                          f"{n}")


# ---- config ------------------------------------------------------------------------------------------------------


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
    if "queue" in c:
        from handlers.queue import QueueConfigError, parse_queue_config

        try:
            parse_queue_config(c["queue"], f"{source} [queue]")
        except QueueConfigError as e:
            raise RiskConfigError(str(e)) from None
    return RiskLimits(**out)


def load_risk_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a risk config (TOML, or JSON when the name ends in .json); numbers stay exact Decimals."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise RiskConfigError(f"risk config {p}: cannot read it ({e.strerror}); check the path") from None
    is_json = p.suffix.lower() == ".json"
    try:
        text = raw.decode("utf-8")
        config = json.loads(text, parse_float=Decimal) if is_json else tomllib.loads(text, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        kind = "JSON" if is_json else "TOML"
        raise RiskConfigError(f"risk config {p}: not valid {kind} ({msg}); fix the file") from None
    parse_risk_config(config, f"risk config {p}")
    return config


# ---- the engine ----------------------------------------------------------------------------------------------------


def build_rules(limits: RiskLimits) -> list[RiskRule]:
    """The enabled rules in RULE_ORDER."""
    L = limits
    rules: list[RiskRule] = [TradingStateRule()]
    if L.allowed_instruments is not None:
        rules.append(AllowedInstrumentsRule(list(L.allowed_instruments)))
    rules += [UnknownInstrumentRule(), InvalidOrderRule(), QuantityPrecisionRule(), PricePrecisionRule(),
              MinQuantityRule(), InstrumentMaxQuantityRule()]
    if L.price_band is not None or L.max_order_notional is not None or L.max_gross_exposure is not None:
        rules.append(LastPriceRule(every_order=L.price_band is not None))
    rules.append(MinNotionalRule())
    if L.price_band is not None:
        rules.append(PriceBandRule(L.price_band))
    if L.max_order_quantity is not None:
        rules.append(MaxOrderQuantityRule(L.max_order_quantity))
    if L.max_order_notional is not None:
        rules.append(MaxOrderNotionalRule(L.max_order_notional))
    if L.max_position is not None or L.max_position_per_instrument:
        rules.append(MaxPositionRule(L.max_position, dict(L.max_position_per_instrument)))
    if L.max_gross_exposure is not None:
        rules.append(MaxGrossExposureRule(L.max_gross_exposure))
    if L.max_open_orders is not None:
        rules.append(MaxOpenOrdersRule(L.max_open_orders))
    if L.order_rate is not None:
        rules.append(OrderRateRule(L.order_rate, int(L.order_rate_window * 1_000_000_000), text(L.order_rate_window)))
    return rules


class RiskEngine:
    """Checks intents against the configured rules and halts trading on daily-loss or drawdown breaches."""

    def __init__(self, config: dict[str, Any] | None = None):
        self.limits = parse_risk_config(config or {})
        self.rules = build_rules(self.limits)
        self._start: Decimal | None = None  # day start / peak the floors below were computed from
        self._peak: Decimal | None = None
        self._loss_floor: Decimal | None = None  # equity at or below which daily_loss_limit is reached
        self._dd_floor: Decimal | None = None  # equity at or below which max_drawdown is reached

    def check(self, intent: dict[str, Any], intent_id: str, state: Any, now: int) -> tuple[str, dict[str, Any]]:
        """RiskAccepted, or RiskRejected naming the first failing rule; cancel intents always pass."""
        iid, cid = intent["instrument_id"], intent["client_order_id"]
        if "side" in intent:  # an order intent; a CancelIntent has no side
            with localcontext(_CTX):
                for rule in self.rules:
                    r = rule.check(intent, state, now)
                    if r is not None:
                        return ("RiskRejected", {"instrument_id": iid, "client_order_id": cid, "intent_id": intent_id,
                                                 "rule": r.rule, "limit": r.limit, "value": r.value,
                                                 "reason": r.reason})
        return ("RiskAccepted", {"instrument_id": iid, "client_order_id": cid, "intent_id": intent_id})

    def evaluate(self, state: Any, now: int) -> list[tuple[str, dict[str, Any]]]:
        """A TradingStateChanged to HALTED the first time daily loss or drawdown reaches its limit; else nothing."""
        L = self.limits
        if L.daily_loss_limit is None and L.max_drawdown is None:
            return []
        r = state.risk
        equity = r.equity
        if equity is None or r.trading_state == "HALTED":
            return []
        # every step calls this: compare equity with floors recomputed only when day start or peak change
        start, peak = r.day_start_equity, r.peak_equity
        if start is not self._start:
            self._start = start
            self._loss_floor = _CTX.subtract(start, L.daily_loss_limit) \
                if start is not None and L.daily_loss_limit is not None else None
        if peak is not self._peak:
            self._peak = peak
            self._dd_floor = _CTX.multiply(peak, _CTX.subtract(_ONE, L.max_drawdown)) \
                if peak is not None and peak > 0 and L.max_drawdown is not None else None
        loss = self._loss_floor is not None and equity <= self._loss_floor
        if not loss and (self._dd_floor is None or equity > self._dd_floor):
            return []
        with localcontext(_CTX):
            if loss:
                reason = (f"daily_loss_limit: equity {text(equity)} is {text(start - equity)} below the day's start "
                          f"{text(start)}; the limit is {text(L.daily_loss_limit)}")
            else:
                dd = ((peak - equity) / peak).quantize(Q18)
                reason = (f"max_drawdown: equity {text(equity)} is {text(dd)} below the peak {text(peak)}; the limit "
                          f"is {text(L.max_drawdown)}")
        return [("TradingStateChanged", {"state": "HALTED", "previous": r.trading_state, "reason": reason,
                                         "incident_id": None})]
