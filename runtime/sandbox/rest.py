"""Binance spot's REST API v3 over the sandbox venue: routes, parameters, signed requests, faults, error codes.

Public: GET /api/v3/ping, time, exchangeInfo, ticker/price, ticker/bookTicker, ticker/24hr, avgPrice, depth,
trades, aggTrades, klines. Signed (X-MBX-APIKEY + HMAC signature, timestamp within recvWindow of the server
clock): GET account; POST/GET/DELETE order; GET/DELETE openOrders; GET allOrders; GET myTrades. Query windows
follow Binance: startTime/endTime at most 24 h apart (-1127), `limit` at most 1000, `fromId`/`orderId` cursors.
What a default ccxt.binance asks at load_markets is served too (GET /sapi/v1/capital/config/getall, the margin
pair lists, empty /fapi, /dapi and /eapi exchangeInfo), so no ccxt option is needed. Every answer carries
X-MBX-USED-WEIGHT-1M; faults (runtime/sandbox/faults.py) may refuse a request before it is
processed, or process it and then lose, delay or blur the answer.
"""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from runtime.sandbox.book import OrderRequest, Reject
from runtime.sandbox.faults import ORDER_MARK, REST_AFTER, REST_BEFORE, Rule
from runtime.sandbox.market import interval_ms
from runtime.sandbox.signing import SignatureRejected
from runtime.sandbox.wire import (
    NUMBER_RANGE,
    WireError,
    agg_trade_view,
    book_ticker,
    cancel_view,
    kline_row,
    new_order_view,
    num,
    order_view,
    print_view,
    reject_error,
    signature_error,
    trade_view,
)
from schemas.decimals import ARITHMETIC, ZERO

if TYPE_CHECKING:
    from runtime.sandbox.venue import Venue

DAY_MS = 86_400_000
MAX_LIMIT = 1000
JSON_TYPE = "application/json;charset=UTF-8"
_NUMBER = re.compile(NUMBER_RANGE)
_CID = re.compile(r"^[a-zA-Z0-9\-_.]{1,36}$")

Handler = Callable[[dict[str, str]], Any]


class RestApi:
    """The REST endpoints of one venue."""

    def __init__(self, venue: Venue):
        self.venue = venue
        self.weight_minute = -1
        self.weight = 0
        self.orders_today = 0
        # (method, path) → (handler, signed, weight)
        self.routes: dict[tuple[str, str], tuple[Handler, bool, int]] = {
            ("GET", "/api/v3/ping"): (self.ping, False, 1),
            ("GET", "/api/v3/time"): (self.time, False, 1),
            ("GET", "/api/v3/exchangeInfo"): (self.exchange_info, False, 20),
            ("GET", "/api/v3/ticker/price"): (self.ticker_price, False, 2),
            ("GET", "/api/v3/ticker/bookTicker"): (self.book_ticker, False, 2),
            ("GET", "/api/v3/ticker/24hr"): (self.ticker_24hr, False, 2),
            ("GET", "/api/v3/avgPrice"): (self.avg_price, False, 2),
            ("GET", "/api/v3/depth"): (self.depth, False, 5),
            ("GET", "/api/v3/trades"): (self.trades, False, 25),
            ("GET", "/api/v3/aggTrades"): (self.agg_trades, False, 4),
            ("GET", "/api/v3/klines"): (self.klines, False, 2),
            ("GET", "/api/v3/uiKlines"): (self.klines, False, 2),
            ("GET", "/api/v3/account"): (self.account, True, 20),
            ("POST", "/api/v3/order"): (self.new_order, True, 1),
            ("GET", "/api/v3/order"): (self.get_order, True, 4),
            ("DELETE", "/api/v3/order"): (self.cancel_order, True, 1),
            ("GET", "/api/v3/openOrders"): (self.open_orders, True, 6),
            ("DELETE", "/api/v3/openOrders"): (self.cancel_open_orders, True, 1),
            ("GET", "/api/v3/allOrders"): (self.all_orders, True, 20),
            ("GET", "/api/v3/myTrades"): (self.my_trades, True, 20),
            # what a default ccxt.binance asks at load_markets: the spot coins, and empty other catalogues
            ("GET", "/sapi/v1/capital/config/getall"): (self.coins, True, 10),
            ("GET", "/sapi/v1/margin/allPairs"): (self.nothing, True, 1),
            ("GET", "/sapi/v1/margin/isolated/allPairs"): (self.nothing, True, 10),
            ("GET", "/fapi/v1/exchangeInfo"): (self.no_symbols, False, 1),
            ("GET", "/dapi/v1/exchangeInfo"): (self.no_symbols, False, 1),
            ("GET", "/eapi/v1/exchangeInfo"): (self.no_options, False, 1),
        }

    # ---- dispatch ------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every /api/v3 request: faults before, the signature, the handler, faults after."""
        method, path = request.method, request.path
        query = request.rel_url.raw_query_string
        try:
            body = (await request.text()) if request.can_read_body else ""
        except ConnectionError:  # the client went away mid-request (a SIGKILLed session): nobody reads an answer
            return web.Response(status=499)
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        route = self.routes.get((method, path))
        if route is None:
            return _error(WireError(404, -1000, f"No such endpoint in the sandbox: {method} {path}"), {})
        handler, signed, weight = route
        self.venue.requests[f"{method} {path}"] += 1
        headers = self._count(weight, method == "POST" and path == "/api/v3/order")
        faults = self.venue.faults
        before = faults.draw(REST_BEFORE, method, path, signed)
        if before is not None:
            return _refusal(before, headers, self.venue.clock.server_ms())
        try:
            if signed:
                self.venue.credentials.check_rest(request.headers.get("X-MBX-APIKEY"), query, body, params,
                                                  self.venue.clock.server_ms())
            result = handler(params)
        except Reject as e:
            return _error(reject_error(e), headers)
        except SignatureRejected as e:
            return _error(signature_error(e), headers)
        except WireError as e:
            return _error(e, headers)
        after = faults.draw(REST_AFTER, method, path, signed)
        if after is None:
            return _json(result, headers)
        if after.kind == "accept_then_drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200)
        if after.kind == "accept_then_slow":
            await asyncio.sleep(after.value)
            return _json(result, headers)
        return _error(WireError(408, -1007, "Timeout waiting for response from backend server. Send status "
                                            "unknown; execution status unknown."), headers)

    def _count(self, weight: int, order: bool) -> dict[str, str]:
        minute = self.venue.clock.server_ms() // 60_000
        if minute != self.weight_minute:
            self.weight_minute, self.weight = minute, 0
        self.weight += weight
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.weight)}
        if order:
            self.orders_today += 1
            headers["X-MBX-ORDER-COUNT-1D"] = str(self.orders_today)
        return headers

    # ---- public --------------------------------------------------------------------------------------------

    def ping(self, p: dict[str, str]) -> dict[str, Any]:
        return {}

    def time(self, p: dict[str, str]) -> dict[str, Any]:
        return {"serverTime": self.venue.clock.server_ms()}

    def nothing(self, p: dict[str, str]) -> list[Any]:
        return []

    def no_symbols(self, p: dict[str, str]) -> dict[str, Any]:
        """Futures catalogues: this venue lists spot markets only."""
        return {"timezone": "UTC", "serverTime": self.venue.clock.server_ms(), "rateLimits": [], "assets": [],
                "symbols": []}

    def no_options(self, p: dict[str, str]) -> dict[str, Any]:
        return {"timezone": "UTC", "serverTime": self.venue.clock.server_ms(), "optionContracts": [],
                "optionAssets": [], "optionSymbols": [], "rateLimits": []}

    def coins(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """GET /sapi/v1/capital/config/getall: every asset the instruments name, tradable, on one network."""
        balances = {a: (f, lk) for a, f, lk in self.venue.book.balances()}
        out = []
        for asset in sorted(balances):
            free, locked = balances[asset]
            out.append({"coin": asset, "name": asset, "depositAllEnable": True, "withdrawAllEnable": True,
                        "free": num(free), "locked": num(locked), "freeze": "0", "withdrawing": "0", "ipoing": "0",
                        "ipoable": "0", "storage": "0", "isLegalMoney": False, "trading": True,
                        "networkList": [{"network": asset, "coin": asset, "name": asset, "isDefault": True,
                                         "depositEnable": True, "withdrawEnable": True, "withdrawFee": "0",
                                         "withdrawMin": "0", "withdrawMax": "9000000000", "minConfirm": 1,
                                         "unLockConfirm": 0, "withdrawIntegerMultiple": "0.00000001",
                                         "busy": False}]})
        return out

    def _symbols(self, p: dict[str, str]) -> list[str] | None:
        """The `symbol` or `symbols` (a JSON list) a request names, checked; None when it names none."""
        if p.get("symbol"):
            self._market(p["symbol"])
            return [p["symbol"]]
        if p.get("symbols"):
            try:
                names = json.loads(p["symbols"])
            except ValueError:
                raise WireError(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
            for s in names:
                self._market(s)
            return list(names)
        return None

    def _market(self, symbol: str):
        m = self.venue.market.symbols.get(symbol)
        if m is None:
            raise Reject("unknown_symbol")
        return m

    def exchange_info(self, p: dict[str, str]) -> dict[str, Any]:
        wanted = self._symbols(p)
        out = []
        for s, m in self.venue.market.symbols.items():
            if wanted is not None and s not in wanted:
                continue
            i = m.instrument
            max_qty = num(i.max_qty) if i.max_qty is not None else "9000000000.00000000"
            out.append({
                "symbol": s, "status": "TRADING", "baseAsset": i.base, "baseAssetPrecision": 8, "quoteAsset": i.quote,
                "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": False,
                "ocoAllowed": False, "otoAllowed": False, "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": False, "cancelReplaceAllowed": False, "amendAllowed": False,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": num(i.tick), "maxPrice": "1000000000.00000000",
                     "tickSize": num(i.tick)},
                    {"filterType": "LOT_SIZE", "minQty": num(i.min_qty), "maxQty": max_qty, "stepSize": num(i.step)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": max_qty,
                     "stepSize": "0.00000000"},
                    {"filterType": "NOTIONAL", "minNotional": num(i.min_notional or ZERO), "applyMinToMarket": True,
                     "maxNotional": "9000000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
            })
        return {"timezone": "UTC", "serverTime": self.venue.clock.server_ms(),
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                "limit": 6000},
                               {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000}],
                "exchangeFilters": [], "symbols": out}

    def _each(self, p: dict[str, str], one: Callable[[str], Any]) -> Any:
        wanted = self._symbols(p)
        if p.get("symbol"):
            return one(p["symbol"])
        return [one(s) for s in (wanted if wanted is not None else self.venue.market.symbols)]

    def ticker_price(self, p: dict[str, str]) -> Any:
        def one(s: str) -> dict[str, Any]:
            last = self._market(s).last_price
            return {"symbol": s, "price": num(last if last is not None else ZERO)}
        return self._each(p, one)

    def book_ticker(self, p: dict[str, str]) -> Any:
        def one(s: str) -> dict[str, Any]:
            bt = book_ticker(self._market(s))
            if bt is None:
                return {"symbol": s, "bidPrice": "0.00000000", "bidQty": "0.00000000", "askPrice": "0.00000000",
                        "askQty": "0.00000000"}
            return {k: v for k, v in bt.items() if k != "u"}
        return self._each(p, one)

    def ticker_24hr(self, p: dict[str, str]) -> Any:
        return self._each(p, self._day_stats)

    def _day_stats(self, s: str) -> dict[str, Any]:
        m = self._market(s)
        now = self.venue.clock.market_ms()
        base = m.base_series(60_000) or next(iter(m.series.values()), None)
        candles = [c for c in (list(base.closed) + ([base.current] if base.current else []))
                   if c.open_ms >= now - DAY_MS] if base is not None else []
        last = m.last_price if m.last_price is not None else ZERO
        bt = book_ticker(m) or {"bidPrice": "0.00000000", "bidQty": "0.00000000", "askPrice": "0.00000000",
                                "askQty": "0.00000000"}
        if candles:
            open_, high = candles[0].open, max(c.high for c in candles)
            low = min(c.low for c in candles)
            volume = sum((c.volume for c in candles), ZERO)
            quote = sum((c.quote_volume for c in candles), ZERO)
            count = sum(c.trades for c in candles)
            first_id, last_id = candles[0].first_id, candles[-1].last_id
            open_time = candles[0].open_ms
        else:
            open_ = high = low = last
            volume = quote = ZERO
            count, first_id, last_id, open_time = 0, -1, -1, now - DAY_MS
        change = last - open_
        pct = ARITHMETIC.divide(change * 100, open_).quantize(Decimal("0.001")) if open_ else ZERO
        wavg = ARITHMETIC.divide(quote, volume) if volume else last
        return {"symbol": s, "priceChange": num(change), "priceChangePercent": format(pct, "f"),
                "weightedAvgPrice": num(wavg.quantize(m.instrument.tick)), "prevClosePrice": num(open_),
                "lastPrice": num(last), "lastQty": num(m.last_qty), "bidPrice": bt["bidPrice"], "bidQty": bt["bidQty"],
                "askPrice": bt["askPrice"], "askQty": bt["askQty"], "openPrice": num(open_), "highPrice": num(high),
                "lowPrice": num(low), "volume": num(volume), "quoteVolume": num(quote), "openTime": open_time,
                "closeTime": now, "firstId": first_id, "lastId": last_id, "count": count}

    def avg_price(self, p: dict[str, str]) -> dict[str, Any]:
        m = self._market(_required(p, "symbol"))
        return {"mins": 5, "price": num(m.last_price or ZERO), "closeTime": self.venue.clock.market_ms()}

    def depth(self, p: dict[str, str]) -> dict[str, Any]:
        m = self._market(_required(p, "symbol"))
        limit = _limit(p, 100, 5000)
        bids, asks = m.book()
        return {"lastUpdateId": m.update_id, "bids": [[num(a), num(b)] for a, b in bids[:limit]],
                "asks": [[num(a), num(b)] for a, b in asks[:limit]]}

    def trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market(_required(p, "symbol"))
        limit = _limit(p, 500, MAX_LIMIT)
        return [print_view(x) for x in list(m.prints)[-limit:]]

    def agg_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market(_required(p, "symbol"))
        limit = _limit(p, 500, MAX_LIMIT)
        start, end = _window(p)
        from_id = _int(p, "fromId")
        rows = list(m.prints)
        if from_id is not None:
            rows = [x for x in rows if x.trade_id >= from_id][:limit]
        elif start is not None or end is not None:
            rows = [x for x in rows if (start is None or x.time_ms >= start) and (end is None or x.time_ms <= end)]
            rows = rows[:limit] if start is not None else rows[-limit:]
        else:
            rows = rows[-limit:]
        return [agg_trade_view(x) for x in rows]

    def klines(self, p: dict[str, str]) -> list[list[Any]]:
        m = self._market(_required(p, "symbol"))
        text = _required(p, "interval")
        try:
            length = interval_ms(text)
        except ValueError:
            raise WireError(400, -1120, "Invalid interval.") from None
        limit = _limit(p, 500, MAX_LIMIT)
        start, end = _int(p, "startTime"), _int(p, "endTime")
        rows = m.candles(length)
        window = self.venue.config.kline_window
        if window:  # older klines are gone: a read from before the window begins at its first
            rows = rows[-window:]
        if start is not None:
            rows = [c for c in rows if c.open_ms >= start]
        if end is not None:
            rows = [c for c in rows if c.open_ms <= end]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [kline_row(c) for c in rows]

    # ---- signed --------------------------------------------------------------------------------------------

    def account(self, p: dict[str, str]) -> dict[str, Any]:
        insts = [m.instrument for m in self.venue.market.symbols.values()]
        maker = insts[0].maker_fee if insts else ZERO
        taker = insts[0].taker_fee if insts else ZERO
        balances = self.venue.book.balances()
        if p.get("omitZeroBalances") == "true":
            balances = [b for b in balances if b[1] or b[2]]
        return {"makerCommission": int(maker * 10000), "takerCommission": int(taker * 10000), "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {"maker": num(maker), "taker": num(taker), "buyer": "0.00000000",
                                    "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False,
                "updateTime": self.venue.clock.market_ms(), "accountType": "SPOT",
                "balances": [{"asset": a, "free": num(f), "locked": num(lk)} for a, f, lk in balances],
                "permissions": ["SPOT"], "uid": 1}

    def new_order(self, p: dict[str, str]) -> dict[str, Any]:
        cid = p.get("newClientOrderId") or None
        if cid is not None and not _CID.match(cid):
            raise WireError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                        "'^[a-zA-Z0-9-_.]{1,36}$'.")
        resp_type = p.get("newOrderRespType") or "FULL"
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise WireError(400, -1100, "Illegal characters found in parameter 'newOrderRespType'.")
        req = OrderRequest(_required(p, "symbol"), _required(p, "side"), _required(p, "type"),
                           _decimal(p, "quantity"), _decimal(p, "price"), p.get("timeInForce") or None, cid,
                           _decimal(p, "quoteOrderQty"))
        order = self.venue.book.place(req)
        lag = self.venue.faults.draw(ORDER_MARK, "POST", "/api/v3/order", True)
        if lag is not None:
            order.visible_at_ms = self.venue.clock.server_ms() + int(lag.value * 1000)
        return new_order_view(order, resp_type)

    def _ids(self, p: dict[str, str]) -> tuple[str, int | None, str | None]:
        symbol = _required(p, "symbol")
        order_id = _int(p, "orderId")
        cid = p.get("origClientOrderId") or None
        if order_id is None and cid is None:
            raise WireError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                        "empty/null!")
        return symbol, order_id, cid

    def get_order(self, p: dict[str, str]) -> dict[str, Any]:
        symbol, order_id, cid = self._ids(p)
        return order_view(self.venue.book.find(symbol, order_id, cid))

    def cancel_order(self, p: dict[str, str]) -> dict[str, Any]:
        symbol, order_id, cid = self._ids(p)
        order, cancel_cid = self.venue.book.cancel(symbol, order_id, cid, p.get("newClientOrderId") or None)
        return cancel_view(order, cancel_cid)

    def open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        return [order_view(o) for o in self.venue.book.open_orders(p.get("symbol") or None)]

    def cancel_open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        canceled = self.venue.book.cancel_all(_required(p, "symbol"))
        if not canceled:
            raise Reject("cancel_unknown")
        return [cancel_view(o, c) for o, c in canceled]

    def all_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = _required(p, "symbol")
        start, end = _window(p)
        rows = self.venue.book.all_orders(symbol, from_id=_int(p, "orderId"), start_ms=start, end_ms=end,
                                          limit=_limit(p, 500, MAX_LIMIT))
        return [order_view(o) for o in rows]

    def my_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        symbol = _required(p, "symbol")
        start, end = _window(p)
        from_id = _int(p, "fromId")
        if from_id is not None and (start is not None or end is not None):
            raise WireError(400, -1128, "Combination of optional parameters invalid.")
        rows = self.venue.book.my_trades(symbol, order_id=_int(p, "orderId"), from_id=from_id, start_ms=start,
                                         end_ms=end, limit=_limit(p, 500, MAX_LIMIT))
        return [trade_view(t) for t in rows]


# ---- parameters ------------------------------------------------------------------------------------------------

def _required(p: dict[str, str], name: str) -> str:
    value = p.get(name)
    if value is None or value == "":
        raise WireError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _decimal(p: dict[str, str], name: str) -> Decimal | None:
    value = p.get(name)
    if value is None or value == "":
        return None
    if not _NUMBER.match(value):
        raise Reject("bad_param", name)
    try:
        return Decimal(value)
    except InvalidOperation:
        raise Reject("bad_param", name) from None


def _int(p: dict[str, str], name: str) -> int | None:
    value = p.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise WireError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                    "'^[0-9]{1,20}$'.") from None


def _limit(p: dict[str, str], default: int, maximum: int) -> int:
    limit = _int(p, "limit")
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise WireError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _window(p: dict[str, str]) -> tuple[int | None, int | None]:
    start, end = _int(p, "startTime"), _int(p, "endTime")
    if start is not None and end is not None:
        if end < start:
            raise WireError(400, -1127, "startTime must be before endTime.")
        if end - start > DAY_MS:
            raise WireError(400, -1127, "More than 24 hours between startTime and endTime.")
    return start, end


# ---- responses -------------------------------------------------------------------------------------------------

def _json(payload: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(text=json.dumps(payload, separators=(",", ":")), status=200, content_type=None,
                        headers={"Content-Type": JSON_TYPE, **headers})


def _error(e: WireError, headers: dict[str, str]) -> web.Response:
    return web.Response(text=json.dumps(e.body(), separators=(",", ":")), status=e.status,
                        headers={"Content-Type": JSON_TYPE, **headers, **e.headers})


def _refusal(rule: Rule, headers: dict[str, str], server_ms: int) -> web.Response:
    """A fault that answers before the request is processed (nothing changes at the venue)."""
    if rule.kind == "http_5xx_html":
        return web.Response(text="<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
                                 "Gateway</h1></center></body></html>", status=502,
                            headers={"Content-Type": "text/html", **headers})
    if rule.kind == "http_5xx_json":
        return _error(WireError(503, -1008, "Server is currently overloaded with other requests. Please try again "
                                            "in a few minutes."), headers)
    retry = str(max(1, int(rule.value)))
    if rule.kind == "rate_limit_429":
        return _error(WireError(429, -1003, "Too many requests; current limit of IP(127.0.0.1) request weight per "
                                            "minute is 6000. Please use WebSocket Streams for live updates to avoid "
                                            "polling the API.", {"Retry-After": retry}), headers)
    until = server_ms + int(rule.value * 1000)
    return _error(WireError(418, -1003, f"Way too much request weight used; IP banned until {until}. Please use "
                                        "WebSocket Streams for live updates to avoid bans.", {"Retry-After": retry}),
                  headers)
