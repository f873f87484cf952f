"""The risk rules, one class each, in the fixed order of RULE_ORDER (see handlers/risk/engine.py for what each checks).

A rule reads the state (orders, portfolio, risk counters) and an intent, and returns a Rejection naming itself, its
limit and the offending value as exact text, or None. Rules are pure: no I/O, no clock but event time.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from schemas.decimals import ARITHMETIC as _CTX, ONE as _ONE, ZERO as _ZERO, text

RULE_ORDER = ("trading_state", "incident", "allowed_instruments", "unknown_instrument", "invalid_order",
              "quantity_precision", "price_precision", "min_quantity", "instrument_max_quantity", "last_price",
              "min_notional", "price_band", "max_order_quantity", "max_order_notional", "max_position", "max_gross_exposure",
              "max_open_orders", "order_rate")


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


class IncidentRule(RiskRule):
    """An open incident with action DENY on the order's instrument refuses it (stale data, an operator's halt of the
    instrument); with action REDUCE, it refuses orders that do not reduce the instrument's position."""

    name = "incident"

    def check(self, intent, state, now):
        iid = intent["instrument_id"]
        found = state.incidents.restricting(iid) if state.incidents.open else None
        if found is None:
            return None
        what = f"{found.kind} {found.value} (threshold {found.threshold})" if found.threshold else found.kind
        if found.action == "REDUCE":
            if intent.get("reduce_only"):
                return None
            pos, after = position_after(intent, state)
            if reduces(pos, after):
                return None
            return self.reject("no open incident", found.incident_id,
                               f"incident {found.incident_id} allows only orders that reduce the position on {iid} "
                               f"({what}): this one takes it from {text(pos)} to {text(after)}")
        return self.reject("no open incident", found.incident_id,
                           f"incident {found.incident_id} denies new orders on {iid}: {what}")


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


