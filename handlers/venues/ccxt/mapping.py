"""ccxt's unified structures ↔ tape's payloads: instruments from markets, fills from trades, balances, order params.

Every number crosses as exact text: ccxt hands floats for prices and amounts, so each one is turned into a Decimal
through its shortest repr (`Decimal(repr(x))`, exact for what the venue sent as a decimal string) and never used as
a float. Instrument ids are `<venue market id>.<VENUE>` (BTCUSDT.BINANCE), the form `tape ingest` gives history.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from schemas.decimals import ONE, ZERO


def dec(value: Any) -> Decimal | None:
    """A number from ccxt as an exact Decimal (None stays None); floats go through their shortest repr."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def trade_tick(iid: str, t: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A ccxt trade (REST or streamed) as a TradeTick payload and its venue time (ns): the taker's side is the
    aggressor's, prices exact."""
    side = {"buy": "BUYER", "sell": "SELLER"}.get(t.get("side") or "", "NO_AGGRESSOR")
    return ({"instrument_id": iid, "price": dec(t["price"]), "quantity": dec(t["amount"]), "aggressor_side": side,
             "trade_id": str(t["id"])}, int(t["timestamp"]) * 1_000_000)


def quote_tick(iid: str, ticker: dict[str, Any]) -> dict[str, Any] | None:
    """A ccxt ticker's best bid and ask as a QuoteTick payload (None while one side is empty)."""
    values = [dec(ticker.get(k)) for k in ("bid", "bidVolume", "ask", "askVolume")]
    if any(v is None for v in values):
        return None
    return dict(zip(("bid_price", "bid_size", "ask_price", "ask_size"), values), instrument_id=iid)


def instrument_id(market: dict[str, Any], venue: str) -> str:
    """The tape instrument id of a ccxt market."""
    return f"{market['id']}.{venue}"


def _places(increment: Decimal) -> int:
    exponent = increment.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def instrument_payload(market: dict[str, Any], venue: str) -> dict[str, Any]:
    """An InstrumentDefined payload from a ccxt market: tick size, lot size, limits, fees, contract size."""
    precision, limits = market.get("precision") or {}, market.get("limits") or {}
    tick = dec(precision.get("price")) or Decimal("0.00000001")
    lot = dec(precision.get("amount")) or Decimal("0.00000001")
    kind = "SPOT" if market.get("spot", True) else ("PERPETUAL" if market.get("swap") else "FUTURE")
    amount, cost = limits.get("amount") or {}, limits.get("cost") or {}
    return {"instrument_id": instrument_id(market, venue), "venue": venue, "symbol": market["id"], "kind": kind,
            "base_currency": market["base"], "quote_currency": market["quote"],
            "settlement_currency": market.get("settle") or market["quote"], "price_increment": tick,
            "size_increment": lot, "price_precision": _places(tick), "size_precision": _places(lot),
            "min_quantity": dec(amount.get("min")) or lot, "max_quantity": dec(amount.get("max")),
            "min_notional": dec(cost.get("min")), "maker_fee": dec(market.get("maker")) or ZERO,
            "taker_fee": dec(market.get("taker")) or ZERO, "multiplier": dec(market.get("contractSize")) or ONE}


def order_params(order: dict[str, Any]) -> tuple[str, str, Decimal, Decimal | None, dict[str, Any]]:
    """(type, side, amount, price, params) for `create_order` from an OrderSubmitted payload; the client order id
    travels in params as ccxt's unified `clientOrderId` (ccxt renames it per venue)."""
    params: dict[str, Any] = {"clientOrderId": order["client_order_id"]}
    tif = order.get("time_in_force") or "GTC"
    if order.get("post_only"):
        params["postOnly"] = True  # Binance spot: a LIMIT_MAKER, which takes no timeInForce
    elif order["order_type"] == "LIMIT" and tif in ("IOC", "FOK", "GTC"):
        params["timeInForce"] = tif
    if order.get("reduce_only"):
        params["reduceOnly"] = True
    if order.get("trigger_price") is not None:
        params["stopPrice"] = order["trigger_price"]
    kind = {"MARKET": "market", "LIMIT": "limit", "STOP_MARKET": "stop_market", "STOP_LIMIT": "stop_limit"}
    return kind[order["order_type"]], order["side"].lower(), order["quantity"], order.get("price"), params


def fill_payload(trade: dict[str, Any], instrument: str, client_order_id: str) -> dict[str, Any]:
    """An OrderFilled payload from a ccxt trade of one of our orders (one event per venue trade)."""
    fee = trade.get("fee") or {}
    taker = trade.get("takerOrMaker")
    return {"instrument_id": instrument, "client_order_id": client_order_id,
            "venue_order_id": str(trade["order"]) if trade.get("order") is not None else None,
            "trade_id": str(trade["id"]), "side": trade["side"].upper(), "last_price": dec(trade["price"]),
            "last_quantity": dec(trade["amount"]), "fee": dec(fee.get("cost")) or ZERO,
            "fee_currency": fee.get("currency") or "", "liquidity_side": {"maker": "MAKER", "taker": "TAKER"}.get(
                taker or "", "NONE")}


def balances_payload(balance: dict[str, Any], venue: str) -> dict[str, Any]:
    """A reported AccountState payload from `fetch_balance` (currencies with any amount, in name order)."""
    rows = []
    for cur in sorted(balance.get("total") or {}):
        total = dec(balance["total"][cur]) or ZERO
        free = dec((balance.get("free") or {}).get(cur)) or ZERO
        used = dec((balance.get("used") or {}).get(cur)) or ZERO
        if total or free or used:
            rows.append({"currency": cur, "total": total, "free": free, "locked": used})
    return {"venue": venue, "balances": rows, "reported": True}
