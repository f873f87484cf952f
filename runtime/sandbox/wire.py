"""Binance spot's payload shapes, shared by the REST and websocket layers: numbers as strings, orders, trades, errors.

Numbers go out as Binance prints them, eight decimals ("0.10000000"), or exactly when they need more; ids and times
are JSON integers (ms). Errors are `{"code": -NNNN, "msg": "…"}` with Binance's codes and HTTP statuses, so a
client's error mapping (ccxt's) classifies them as it would the real venue's.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from runtime.sandbox.book import (
    RESTING,
    AccountUpdate,
    Deposit,
    Execution,
    Notice,
    Order,
    Reject,
    Trade,
)
from runtime.sandbox.market import Candle, Print, SymbolMarket
from runtime.sandbox.signing import SignatureRejected
from schemas.decimals import ARITHMETIC, EXACT, exact_text

EIGHT = Decimal("1e-8")
NUMBER_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
STP_MODE = "EXPIRE_MAKER"


class WireError(Exception):
    """A Binance error response: HTTP status, code and message."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


REJECTS = {
    "unknown_symbol": (400, -1121, "Invalid symbol."),
    "bad_side": (400, -1117, "Invalid side."),
    "bad_type": (400, -1116, "Invalid orderType."),
    "bad_time_in_force": (400, -1115, "Invalid timeInForce."),
    "missing_param": (400, -1102, "Mandatory parameter '{}' was not sent, was empty/null, or malformed."),
    "bad_combination": (400, -1106, "Parameter '{}' sent when not required."),
    "bad_param": (400, -1100, "Illegal characters found in parameter '{}'; legal range is '"
                  + NUMBER_RANGE.replace("{", "{{").replace("}", "}}") + "'."),
    "unsupported": (400, -1128, "Combination of optional parameters invalid: {} is not supported by the sandbox."),
    "filter": (400, -1013, "Filter failure: {}"),
    "insufficient_balance": (400, -2010, "Account has insufficient balance for requested action."),
    "duplicate_order": (400, -2010, "Duplicate order sent."),
    "would_take": (400, -2010, "Order would immediately match and take."),
    "order_not_found": (400, -2013, "Order does not exist."),
    "cancel_unknown": (400, -2011, "Unknown order sent."),
}
SIGNATURE_REJECTS = {
    "missing_key": (401, -2014, "API-key format invalid."),
    "key": (401, -2015, "Invalid API-key, IP, or permissions for action."),
    "signature": (400, -1022, "Signature for this request is not valid."),
    "timestamp": (400, -1021, "Timestamp for this request is outside of the recvWindow."),
    "recv_window": (400, -1131, "recvWindow must be less than 60000"),
    "missing": (400, -1102, "Mandatory parameter '{}' was not sent, was empty/null, or malformed."),
    "malformed": (400, -1100, "Illegal characters found in parameter '{}'; legal range is '^[0-9]{{1,20}}$'."),
}


def reject_error(e: Reject) -> WireError:
    status, code, msg = REJECTS[e.reason]
    return WireError(status, code, msg.format(e.detail))


def signature_error(e: SignatureRejected) -> WireError:
    status, code, msg = SIGNATURE_REJECTS[e.reason]
    return WireError(status, code, msg.format(e.detail))


def num(d: Decimal) -> str:
    """A Binance number: eight decimals, or every decimal it has when that is more."""
    q = d.quantize(EIGHT, context=EXACT)
    return format(q, "f") if q == d else exact_text(d)


def order_view(o: Order) -> dict[str, Any]:
    """GET /api/v3/order, openOrders, allOrders."""
    return {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
            "price": num(o.price), "origQty": num(o.orig_qty), "executedQty": num(o.executed_qty),
            "cummulativeQuoteQty": num(o.cum_quote), "status": o.status, "timeInForce": o.time_in_force,
            "type": o.type, "side": o.side, "stopPrice": num(Decimal(0)), "icebergQty": num(Decimal(0)),
            "time": o.time_ms, "updateTime": o.update_ms, "isWorking": o.is_open and o.type in RESTING,
            "workingTime": o.time_ms, "origQuoteOrderQty": num(o.quote_order_qty),
            "selfTradePreventionMode": STP_MODE}


def new_order_view(o: Order, resp_type: str) -> dict[str, Any]:
    """POST /api/v3/order in ACK, RESULT or FULL form."""
    head = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
            "transactTime": o.time_ms}
    if resp_type == "ACK":
        return head
    body = {**head, "price": num(o.price), "origQty": num(o.orig_qty), "executedQty": num(o.executed_qty),
            "origQuoteOrderQty": num(o.quote_order_qty), "cummulativeQuoteQty": num(o.cum_quote),
            "status": o.status, "timeInForce": o.time_in_force, "type": o.type, "side": o.side,
            "workingTime": o.time_ms, "selfTradePreventionMode": STP_MODE}
    if resp_type == "FULL":
        body["fills"] = [{"price": num(t.price), "qty": num(t.qty), "commission": num(t.commission),
                          "commissionAsset": t.commission_asset, "tradeId": t.trade_id} for t in o.trades]
    return body


def cancel_view(o: Order, cancel_cid: str) -> dict[str, Any]:
    """DELETE /api/v3/order: the order as canceled, its own client id as origClientOrderId."""
    return {"symbol": o.symbol, "origClientOrderId": o.client_order_id, "orderId": o.order_id, "orderListId": -1,
            "clientOrderId": cancel_cid, "transactTime": o.update_ms, "price": num(o.price),
            "origQty": num(o.orig_qty), "executedQty": num(o.executed_qty),
            "origQuoteOrderQty": num(o.quote_order_qty), "cummulativeQuoteQty": num(o.cum_quote),
            "status": o.status, "timeInForce": o.time_in_force, "type": o.type, "side": o.side,
            "selfTradePreventionMode": STP_MODE}


def trade_view(t: Trade) -> dict[str, Any]:
    """GET /api/v3/myTrades."""
    return {"symbol": t.symbol, "id": t.trade_id, "orderId": t.order_id, "orderListId": -1, "price": num(t.price),
            "qty": num(t.qty), "quoteQty": num(t.quote_qty), "commission": num(t.commission),
            "commissionAsset": t.commission_asset, "time": t.time_ms, "isBuyer": t.is_buyer,
            "isMaker": t.is_maker, "isBestMatch": True}


def print_view(p: Print) -> dict[str, Any]:
    """GET /api/v3/trades."""
    return {"id": p.trade_id, "price": num(p.price), "qty": num(p.qty), "quoteQty": num(ARITHMETIC.multiply(p.price, p.qty)),
            "time": p.time_ms, "isBuyerMaker": p.buyer_maker, "isBestMatch": True}


def agg_trade_view(p: Print) -> dict[str, Any]:
    """GET /api/v3/aggTrades (one print per aggregate)."""
    return {"a": p.trade_id, "p": num(p.price), "q": num(p.qty), "f": p.trade_id, "l": p.trade_id,
            "T": p.time_ms, "m": p.buyer_maker, "M": True}


def kline_row(c: Candle) -> list[Any]:
    """One row of GET /api/v3/klines."""
    return [c.open_ms, num(c.open), num(c.high), num(c.low), num(c.close), num(c.volume), c.close_ms,
            num(c.quote_volume), c.trades, "0", "0", "0"]


def kline_event(symbol: str, interval: str, c: Candle, event_ms: int) -> dict[str, Any]:
    """The <symbol>@kline_<interval> stream payload."""
    return {"e": "kline", "E": event_ms, "s": symbol,
            "k": {"t": c.open_ms, "T": c.close_ms, "s": symbol, "i": interval, "f": c.first_id or -1,
                  "L": c.last_id or -1, "o": num(c.open), "c": num(c.close), "h": num(c.high), "l": num(c.low),
                  "v": num(c.volume), "n": c.trades, "x": c.closed, "q": num(c.quote_volume), "V": "0", "Q": "0",
                  "B": "0"}}


def book_ticker(m: SymbolMarket) -> dict[str, Any] | None:
    """Best bid and ask (GET /api/v3/ticker/bookTicker and the @bookTicker stream, which adds `u`)."""
    bids, asks = m.book()
    if not bids or not asks:
        return None
    return {"u": m.update_id, "symbol": m.instrument.symbol, "bidPrice": num(bids[0][0]), "bidQty": num(bids[0][1]),
            "askPrice": num(asks[0][0]), "askQty": num(asks[0][1])}


def execution_report(ex: Execution, execution_id: int) -> dict[str, Any]:
    """The user data stream's executionReport for one order event."""
    o, t = ex.order, ex.trade
    canceled = ex.execution_type == "CANCELED"
    zero = num(Decimal(0))
    event = {
        "e": "executionReport", "E": ex.time_ms, "s": o.symbol,
        "c": ex.cancel_client_order_id if canceled and ex.cancel_client_order_id else o.client_order_id,
        "S": o.side, "o": o.type, "f": o.time_in_force, "q": num(o.orig_qty), "p": num(o.price), "P": zero,
        "F": zero, "g": -1, "C": o.client_order_id if canceled else "", "x": ex.execution_type, "X": o.status,
        "r": "NONE", "i": o.order_id, "l": num(t.qty) if t else zero, "z": num(o.executed_qty),
        "L": num(t.price) if t else zero, "n": num(t.commission) if t else "0",
        "N": t.commission_asset if t else None, "T": ex.time_ms, "t": t.trade_id if t else -1,
        "I": execution_id, "w": o.is_open and o.type in RESTING, "m": t.is_maker if t else False, "M": False,
        "O": o.time_ms, "Z": num(o.cum_quote), "Y": num(t.quote_qty) if t else zero,
        "Q": num(o.quote_order_qty), "W": o.time_ms, "V": STP_MODE}
    if o.expiry_reason and ex.execution_type == "EXPIRED":
        event["eR"] = o.expiry_reason
    return event


def user_event(notice: Notice, execution_id: int) -> dict[str, Any]:
    """The user data stream payload of one account notice."""
    if isinstance(notice, Execution):
        return execution_report(notice, execution_id)
    if isinstance(notice, AccountUpdate):
        return {"e": "outboundAccountPosition", "E": notice.time_ms, "u": notice.time_ms,
                "B": [{"a": a, "f": num(f), "l": num(lk)} for a, f, lk in notice.balances]}
    assert isinstance(notice, Deposit)
    return {"e": "balanceUpdate", "E": notice.time_ms, "a": notice.asset, "d": num(notice.delta),
            "T": notice.time_ms}
