"""Builders of event payloads for the projection tests (exact schema field names)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from projections.market import MarketState

D = Decimal
IID = "BTCUSDT.SIM"


def instrument(iid: str = IID, kind: str = "SPOT", base: str = "BTC", quote: str = "USDT",
               settlement: str | None = None, multiplier: str = "1") -> dict[str, Any]:
    return {"instrument_id": iid, "venue": "SIM", "symbol": iid.split(".")[0], "kind": kind,
            "base_currency": base, "quote_currency": quote, "settlement_currency": settlement or quote,
            "price_increment": D("0.01"), "size_increment": D("0.001"), "price_precision": 2, "size_precision": 3,
            "min_quantity": D("0.001"), "max_quantity": None, "min_notional": None, "maker_fee": D("0.001"),
            "taker_fee": D("0.001"), "multiplier": D(multiplier)}


def market(*defs: dict[str, Any]) -> MarketState:
    m = MarketState()
    for d in defs or (instrument(),):
        m.apply("InstrumentDefined", d, 0)
    return m


def trade(m: MarketState, price: str, iid: str = IID, ts: int = 0) -> None:
    """Set the mark of `iid` with a TradeTick."""
    m.apply("TradeTick", {"instrument_id": iid, "price": D(price), "size": D(1), "aggressor_side": "BUYER",
                          "trade_id": "x", "ts_event": ts}, ts)


def submitted(cid: str, side: str = "BUY", qty: str = "1", order_type: str = "MARKET", iid: str = IID,
              price: str | None = None, trigger: str | None = None) -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue": "SIM", "strategy_id": "t", "side": side,
            "order_type": order_type, "quantity": D(qty), "price": D(price) if price else None,
            "trigger_price": D(trigger) if trigger else None, "time_in_force": "GTC", "expire_ts": None,
            "post_only": False, "reduce_only": False}


def fill(cid: str, side: str, qty: str, price: str, fee: str = "0", fee_currency: str = "USDT", iid: str = IID,
         trade_id: str = "t") -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue_order_id": None, "trade_id": trade_id,
            "side": side, "last_price": D(price), "last_quantity": D(qty), "fee": D(fee),
            "fee_currency": fee_currency, "liquidity_side": "TAKER"}


def ack(cid: str, iid: str = IID, **extra: Any) -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue_order_id": "v-" + cid, **extra}


def account(**balances: str) -> dict[str, Any]:
    return {"venue": "SIM", "reported": True,
            "balances": [{"currency": c, "total": D(v), "free": D(v), "locked": D(0)} for c, v in balances.items()]}
