"""The risk engine: every order intent gets RiskAccepted or RiskRejected naming the rule, the limit and the value.

Rules run in this fixed order and the first that fails decides (instrument rules before limits, so a malformed
order is named as such, and the trading state first, so a halted runtime rejects every order by that rule):

  trading_state         ACTIVE: all; REDUCING: only orders that reduce the position without flipping it, counting
                        open and unsent orders on the same side (reduce_only orders pass); HALTED: none.
                        limit = the state, value = the position the order would lead to. Cancels always pass.
  incident              no open incident denies orders on the instrument (action DENY: stale data, an operator's
                        halt of it; REDUCE: orders that do not reduce its position); value = the incident's id.
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
(a TradingStateChanged from outside) lifts a halt. With `halts=False` (a live session, whose incident monitor
raises the loss limits as incidents that halt: handlers/incidents/monitor.py) it leaves halting to the monitor.
"""
from __future__ import annotations

from decimal import localcontext
from typing import Any

from handlers.risk.limits import RiskLimits
from handlers.risk.losses import LossLimits
from handlers.risk.rules import (
    AllowedInstrumentsRule,
    IncidentRule,
    InstrumentMaxQuantityRule,
    InvalidOrderRule,
    LastPriceRule,
    MaxGrossExposureRule,
    MaxOpenOrdersRule,
    MaxOrderNotionalRule,
    MaxOrderQuantityRule,
    MaxPositionRule,
    MinNotionalRule,
    MinQuantityRule,
    OrderRateRule,
    PriceBandRule,
    PricePrecisionRule,
    QuantityPrecisionRule,
    RiskRule,
    TradingStateRule,
    UnknownInstrumentRule,
)
from schemas.decimals import ARITHMETIC as _CTX, text


def build_rules(limits: RiskLimits) -> list[RiskRule]:
    """The enabled rules in RULE_ORDER."""
    L = limits
    rules: list[RiskRule] = [TradingStateRule(), IncidentRule()]
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

    def __init__(self, limits: RiskLimits | None = None, *, halts: bool = True):
        self.limits = limits if limits is not None else RiskLimits()
        self.halts = halts
        self.rules = build_rules(self.limits)
        self.losses = LossLimits(self.limits)  # the one loss-limit rule (the incident monitor's too)

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
        if not self.halts or not self.losses.enabled:
            return []
        r = state.risk
        if r.trading_state == "HALTED":
            return []
        reason = self.losses.reached(r)
        if reason is None:
            return []
        return [("TradingStateChanged", {"state": "HALTED", "previous": r.trading_state, "reason": reason,
                                         "incident_id": None})]
