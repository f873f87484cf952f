"""The sandbox's own endpoints under /sandbox/: inspect the venue's books, script faults, move the market.

    GET  /sandbox/clock           market time (ms and ns), server time, speed: the clock a live session follows
    GET  /sandbox/state           orders, trades, exact balances as the venue holds them (no visibility lag), market
                                  and server time, faults in force, websocket connections, REST requests served
                                  by "METHOD /path"
    POST /sandbox/faults          {"fault": KIND, "next": N | "probability": P, "arg": X, "target": T} or a list
                                  of them; {"fault": "ws_close"|"ws_stall", "now": true, "target", "arg"} acts at
                                  once; {"clear": true | KIND}; {"clock_offset_ms": N}
    POST /sandbox/step            {"events": N}: release the next N source events (speed 0 only)
    POST /sandbox/speed           {"speed": X}: replay at X from now on (0 pauses; a number > 0; "max")
    POST /sandbox/external_order  {"symbol", "side", "type", "quantity", "price"?, "timeInForce"?,
                                  "clientOrderId"?}: an order on the account placed by someone else (web_… id)
    POST /sandbox/deposit         {"asset", "amount"}: a balance change from outside trading

They need no key: the sandbox listens on loopback by default and these are the test harness's hands.
Errors are Binance-shaped JSON, {"code": -1, "msg": "…"} for the sandbox's own refusals.
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web

from runtime.sandbox.book import OrderRequest, Reject
from runtime.sandbox.config import SandboxError, parse_speed
from runtime.sandbox.faults import FaultSpecError, canonical_kind, rules_from_json
from runtime.sandbox.wire import WireError, num, order_view, reject_error, trade_view
from schemas.decimals import exact_text

if TYPE_CHECKING:
    from runtime.sandbox.venue import Venue


class Control:
    """The /sandbox/ endpoints of one venue."""

    def __init__(self, venue: Venue):
        self.venue = venue

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/sandbox/clock", self.clock), web.get("/sandbox/state", self.state),
                web.post("/sandbox/faults", self.faults), web.post("/sandbox/step", self.step),
                web.post("/sandbox/speed", self.speed), web.post("/sandbox/external_order", self.external_order),
                web.post("/sandbox/deposit", self.deposit)]

    async def clock(self, request: web.Request) -> web.Response:
        c = self.venue.clock
        market_ns = c.market_ns()
        return _json({"marketTime": market_ns // 1_000_000, "marketTimeNs": market_ns, "serverTime": c.server_ms(),
                      "speed": _speed(c.speed)})

    async def state(self, request: web.Request) -> web.Response:
        v = self.venue
        orders = []
        for o in v.book.orders.values():
            view = order_view(o)
            view.update({"owner": o.owner, "visibleAt": o.visible_at_ms,
                         "tradeIds": [t.trade_id for t in o.trades]})
            orders.append(view)
        trades = [{**trade_view(t), "visibleAt": t.visible_at_ms} for t in v.book.trades]
        return _json({
            "marketTime": v.clock.market_ms(), "serverTime": v.clock.server_ms(), "speed": _speed(v.clock.speed),
            "released": v.market.released, "exhausted": v.market.exhausted, "laps": v.market.laps,
            "clockOffsetMs": v.clock.offset_ms, "symbols": sorted(v.market.symbols),
            "lastPrices": {s: num(m.last_price) if m.last_price is not None else None
                           for s, m in v.market.symbols.items()},
            "balances": {a: {"free": exact_text(f), "locked": exact_text(lk)} for a, f, lk in v.book.balances()},
            "orders": orders, "trades": trades, "faults": v.faults.table(), "connections": v.streams.view(),
            "requests": dict(sorted(v.requests.items()))})

    async def faults(self, request: web.Request) -> web.Response:
        body = await _body(request)
        v = self.venue
        acted: dict[str, Any] = {}
        try:
            if isinstance(body, dict) and "clock_offset_ms" in body:
                v.clock.offset_ms = int(body["clock_offset_ms"])
            elif isinstance(body, dict) and "clear" in body:
                what = body["clear"]
                kind = None if what is True or what == "all" else canonical_kind(str(what))
                v.faults.clear(kind)
                if kind in (None, "ws_stall"):
                    v.streams.clear_stalls()
            elif isinstance(body, dict) and body.get("now"):
                kind = canonical_kind(str(body.get("fault", "")))
                target = str(body.get("target") or "all")
                arg = body.get("arg", body.get("seconds", body.get("code")))
                if kind == "ws_close":
                    acted["closed"] = v.streams.close(target, int(arg) if arg is not None else 1011)
                elif kind == "ws_stall":
                    acted["stalled"] = v.streams.stall_all(target, float(arg) if arg is not None else 0.0)
                else:
                    raise FaultSpecError(f"fault {kind} cannot act now: only ws_close and ws_stall do; "
                                         "schedule it with next or probability")
            else:
                v.faults.add(rules_from_json(body))
        except (FaultSpecError, ValueError, TypeError) as e:
            return _error(WireError(400, -1, str(e)))
        return _json({"faults": v.faults.table(), "clockOffsetMs": v.clock.offset_ms, **acted})

    async def step(self, request: web.Request) -> web.Response:
        body = await _body(request)
        v = self.venue
        if v.clock.speed != 0:
            return _error(WireError(409, -1, f"the market runs at speed {_speed(v.clock.speed)}: /sandbox/step "
                                             "works only when the sandbox was started with --speed 0"))
        try:
            events = int((body or {}).get("events", 1))
        except (TypeError, ValueError, AttributeError):
            return _error(WireError(400, -1, "send {\"events\": N} with N a whole number >= 0"))
        released = v.step(max(0, events))
        return _json({"released": released, "marketTime": v.clock.market_ms(), "exhausted": v.market.exhausted})

    async def speed(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            value = parse_speed(str((body or {})["speed"]))
        except (KeyError, TypeError, AttributeError, SandboxError) as e:
            return _error(WireError(400, -1, f"send {{\"speed\": X}} with X >= 0 or \"max\" ({e})"))
        self.venue.clock.set_speed(value)
        return _json({"speed": _speed(value), "marketTime": self.venue.clock.market_ms()})

    async def external_order(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _error(WireError(400, -1, "send a JSON object with symbol, side, type, quantity[, price]"))
        try:
            req = OrderRequest(str(body.get("symbol", "")), str(body.get("side", "")).upper(),
                               str(body.get("type", "LIMIT")).upper(), _dec(body.get("quantity")),
                               _dec(body.get("price")), body.get("timeInForce") or (
                                   "GTC" if str(body.get("type", "LIMIT")).upper() == "LIMIT" else None),
                               body.get("clientOrderId") or self.venue.book.web_client_order_id())
            order = self.venue.book.place(req, owner="external")
        except Reject as e:
            return _error(reject_error(e))
        except (InvalidOperation, ValueError):
            return _error(WireError(400, -1, "quantity and price must be decimal numbers (send them as strings)"))
        return _json({**order_view(order), "owner": order.owner})

    async def deposit(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            asset = str(body["asset"]).upper()
            amount = _dec(body["amount"])
        except (KeyError, TypeError, InvalidOperation, ValueError):
            return _error(WireError(400, -1, "send {\"asset\": \"USDT\", \"amount\": \"100\"}"))
        if amount is None:
            return _error(WireError(400, -1, "amount is required"))
        self.venue.book.deposit(asset, amount)
        return _json({"asset": asset, "balances": {a: {"free": num(f), "locked": num(lk)}
                                                   for a, f, lk in self.venue.book.balances()}})


def _speed(speed: float) -> Any:
    return "max" if speed == float("inf") else speed


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    d = Decimal(str(value))
    if not d.is_finite():
        raise ValueError(value)
    return d


async def _body(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json(payload: Any) -> web.Response:
    return web.Response(text=json.dumps(payload, separators=(",", ":")), content_type="application/json")


def _error(e: WireError) -> web.Response:
    return web.Response(text=json.dumps(e.body()), status=e.status, content_type="application/json")
