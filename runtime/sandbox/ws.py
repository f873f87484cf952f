"""Binance's websockets: market streams (/ws, /stream) and the WebSocket API's user data stream (/ws-api/v3).

Market streams: connect to /ws (raw payloads), /ws/<stream>, /stream or /stream?streams=a/b (payloads wrapped as
{"stream", "data"}), then {"method": "SUBSCRIBE", "params": ["btcusdt@trade", …], "id": 1} → {"result": null,
"id": 1}; UNSUBSCRIBE and LIST_SUBSCRIPTIONS too. Streams: <symbol>@trade, @aggTrade, @kline_<interval>,
@bookTicker, @depth / @depth@100ms (diffs with U/u, continuing REST /depth's lastUpdateId) and @depth5/10/20.

User data: on /ws-api/v3, {"id", "method": "userDataStream.subscribe.signature", "params": {apiKey, timestamp,
[recvWindow], signature}} (HMAC checked) → {"id", "status": 200, "result": {"subscriptionId": N}}; then every
account change arrives as {"subscriptionId": N, "event": {executionReport | outboundAccountPosition |
balanceUpdate}}. Also ping, time, session.subscriptions and userDataStream.unsubscribe.

Faults apply to data frames only (never to replies): dropped, duplicated, a close instead, or a stall during
which client pings are still answered with pongs (counted per connection in /sandbox/state).
"""
from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from runtime.sandbox.book import Notice
from runtime.sandbox.faults import Faults
from runtime.sandbox.market import Market, MarketUnit, VenueClock, interval_ms
from runtime.sandbox.signing import Credentials, SignatureRejected
from runtime.sandbox.wire import book_ticker, kline_event, num, signature_error, user_event

QUEUE_FRAMES = 50_000  # a consumer this far behind is disconnected (1008), as a real venue drops slow readers
_PARTIAL_DEPTH = re.compile(r"^depth(5|10|20)(?:@100ms)?$")
_STREAM = re.compile(r"^([a-z0-9]+)@(trade|aggTrade|bookTicker|kline_[0-9a-zA-Z]+|depth(?:5|10|20)?(?:@100ms)?)$")


@dataclass(eq=False)
class Connection:
    """One websocket client: its channel (market or user), subscriptions, outbound queue and fault state."""

    ws: web.WebSocketResponse
    channel: str
    combined: bool = False
    streams: set[str] = field(default_factory=set)
    subscriptions: set[int] = field(default_factory=set)
    next_subscription: int = 0
    stalled_until: float | None = None  # monotonic time; inf = until cleared
    pongs: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_FRAMES))

    def stalled(self) -> bool:
        if self.stalled_until is None:
            return False
        if time.monotonic() >= self.stalled_until:
            self.stalled_until = None
            return False
        return True

    def view(self) -> dict[str, Any]:
        return {"channel": self.channel, "streams": sorted(self.streams), "subscriptions": sorted(self.subscriptions),
                "stalled": self.stalled(), "pongs": self.pongs, "frames_sent": self.frames_sent,
                "frames_dropped": self.frames_dropped}


class Streams:
    """Every websocket connection of the venue, and the fan-out of market units and account notices to them."""

    def __init__(self, market: Market, clock: VenueClock, credentials: Credentials, faults: Faults):
        self.market = market
        self.clock = clock
        self.credentials = credentials
        self.faults = faults
        self.connections: set[Connection] = set()
        self.execution_id = 0
        self._levels: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    # ---- endpoints -----------------------------------------------------------------------------------------

    async def market_endpoint(self, request: web.Request) -> web.WebSocketResponse:
        """/ws, /ws/<stream>, /stream, /stream?streams=a/b: public market streams."""
        conn = await self._open(request, "market")
        conn.combined = request.path.startswith("/stream")
        tail = request.match_info.get("tail", "")
        names = request.query.get("streams", "").split("/") if conn.combined else [tail]
        conn.streams.update(n for n in names if _STREAM.match(n))
        return await self._serve(conn, self._market_request)

    async def api_endpoint(self, request: web.Request) -> web.WebSocketResponse:
        """/ws-api/v3: the WebSocket API (user data stream subscription by signature, ping, time)."""
        conn = await self._open(request, "user")
        return await self._serve(conn, self._api_request)

    async def _open(self, request: web.Request, channel: str) -> Connection:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(ws, channel)
        self.connections.add(conn)
        return conn

    async def _serve(self, conn: Connection, on_request: Any) -> web.WebSocketResponse:
        writer = asyncio.get_running_loop().create_task(self._write(conn))
        try:
            async for msg in conn.ws:
                if msg.type == WSMsgType.PING:
                    conn.pongs += 1
                    await conn.ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    reply = on_request(conn, msg.data)
                    if reply is not None:
                        self._put(conn, json.dumps(reply, separators=(",", ":")))
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            self.connections.discard(conn)
            writer.cancel()
        return conn.ws

    async def _write(self, conn: Connection) -> None:
        while True:
            item = await conn.queue.get()
            if isinstance(item, int):  # a close code
                await conn.ws.close(code=item)
                return
            try:
                await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return
            conn.frames_sent += 1

    # ---- requests ------------------------------------------------------------------------------------------

    def _market_request(self, conn: Connection, text: str) -> dict[str, Any] | None:
        try:
            req = json.loads(text)
        except ValueError as e:
            return {"error": {"code": 3, "msg": f"Invalid JSON: {e}"}}
        rid = req.get("id") if isinstance(req, dict) else None
        method = req.get("method") if isinstance(req, dict) else None
        params = req.get("params") or [] if isinstance(req, dict) else []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and _STREAM.match(p) for p in params):
                return {"error": {"code": 2, "msg": "Invalid request: invalid stream name"}, "id": rid}
            if method == "SUBSCRIBE":
                conn.streams.update(params)
            else:
                conn.streams.difference_update(params)
            return {"result": None, "id": rid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(conn.streams), "id": rid}
        if method == "SET_PROPERTY" and params[:1] == ["combined"]:
            conn.combined = bool(params[1]) if len(params) > 1 else conn.combined
            return {"result": None, "id": rid}
        if method == "GET_PROPERTY" and params[:1] == ["combined"]:
            return {"result": conn.combined, "id": rid}
        return {"error": {"code": 2, "msg": f"Invalid request: unknown variant {method!r}, expected one of "
                                            "SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY"},
                "id": rid}

    def _api_request(self, conn: Connection, text: str) -> dict[str, Any]:
        try:
            req = json.loads(text)
        except ValueError:
            return {"id": None, "status": 400, "error": {"code": -1102, "msg": "Malformed request."}}
        rid = req.get("id") if isinstance(req, dict) else None
        method = req.get("method") if isinstance(req, dict) else None
        params = req.get("params") or {} if isinstance(req, dict) else {}
        if method == "userDataStream.subscribe.signature":
            try:
                self.credentials.check_ws(params if isinstance(params, dict) else {}, self.clock.server_ms())
            except SignatureRejected as e:
                err = signature_error(e)
                return {"id": rid, "status": err.status, "error": err.body()}
            sid = conn.next_subscription
            conn.next_subscription += 1
            conn.subscriptions.add(sid)
            return {"id": rid, "status": 200, "result": {"subscriptionId": sid}}
        if method == "userDataStream.unsubscribe":
            sid = params.get("subscriptionId") if isinstance(params, dict) else None
            if sid is None:
                conn.subscriptions.clear()
            else:
                conn.subscriptions.discard(int(sid))
            return {"id": rid, "status": 200, "result": {}}
        if method == "session.subscriptions":
            return {"id": rid, "status": 200, "result": [{"subscriptionId": s} for s in sorted(conn.subscriptions)]}
        if method == "ping":
            return {"id": rid, "status": 200, "result": {}}
        if method == "time":
            return {"id": rid, "status": 200, "result": {"serverTime": self.clock.server_ms()}}
        return {"id": rid, "status": 400, "error": {"code": -1020, "msg": "This operation is not supported."}}

    # ---- fan-out -------------------------------------------------------------------------------------------

    def publish_market(self, unit: MarketUnit) -> None:
        """Frames of one market unit to every connection subscribed to a stream it moves."""
        diff = self._depth_diff(unit) if unit.matchable else None
        wanted = {s for c in self.connections if c.channel == "market" for s in c.streams}
        sym = unit.symbol.lower()
        payloads: dict[str, list[dict[str, Any]]] = {}
        for name in wanted:
            prefix, _, kind = name.partition("@")
            if prefix == sym:
                payloads[name] = self._payloads(unit, kind, diff)
        for conn in list(self.connections):
            if conn.channel != "market":
                continue
            for name in sorted(conn.streams & payloads.keys()):
                for p in payloads[name]:
                    frame = {"stream": name, "data": p} if conn.combined else p
                    self._send_data(conn, json.dumps(frame, separators=(",", ":")))

    def _depth_diff(self, unit: MarketUnit) -> dict[str, Any]:
        """The diff-depth event from the book last published to this one (levels gone are sent with qty 0)."""
        m = self.market.symbols[unit.symbol]
        bids, asks = m.book()
        new_bids = {num(p): num(q) for p, q in bids}
        new_asks = {num(p): num(q) for p, q in asks}
        old_bids, old_asks = self._levels.get(unit.symbol, ({}, {}))
        self._levels[unit.symbol] = (new_bids, new_asks)
        zero = num(Decimal(0))
        b = [[p, zero] for p in old_bids if p not in new_bids] + [[p, q] for p, q in new_bids.items()]
        a = [[p, zero] for p in old_asks if p not in new_asks] + [[p, q] for p, q in new_asks.items()]
        return {"e": "depthUpdate", "E": unit.time_ms, "s": unit.symbol, "U": m.update_id, "u": m.update_id,
                "b": b, "a": a}

    def _payloads(self, unit: MarketUnit, kind: str, diff: dict[str, Any] | None) -> list[dict[str, Any]]:
        m = self.market.symbols[unit.symbol]
        s = unit.symbol
        if kind == "trade":
            return [{"e": "trade", "E": unit.time_ms, "s": s, "t": p.trade_id, "p": num(p.price), "q": num(p.qty),
                     "T": p.time_ms, "m": p.buyer_maker, "M": True} for p in unit.prints]
        if kind == "aggTrade":
            return [{"e": "aggTrade", "E": unit.time_ms, "s": s, "a": p.trade_id, "p": num(p.price),
                     "q": num(p.qty), "f": p.trade_id, "l": p.trade_id, "T": p.time_ms, "m": p.buyer_maker,
                     "M": True} for p in unit.prints]
        if kind.startswith("kline_"):
            interval = kind[len("kline_"):]
            try:
                length = interval_ms(interval)
            except ValueError:
                return []
            base = m.base_series(length)
            if base is None or base.length_ms != unit.timeframe_ms:
                return []
            out = []
            for c in unit.candles:
                agg = m.candle_at(length, c.open_ms - c.open_ms % length)
                if agg is not None:
                    out.append(kline_event(s, interval, agg, unit.time_ms))
            return out
        if diff is None:
            return []
        if kind == "bookTicker":
            bt = book_ticker(m)
            return [] if bt is None else [{"u": bt["u"], "s": s, "b": bt["bidPrice"], "B": bt["bidQty"],
                                           "a": bt["askPrice"], "A": bt["askQty"]}]
        partial = _PARTIAL_DEPTH.match(kind)
        if partial:
            levels = int(partial.group(1))
            bids, asks = m.book()
            return [{"lastUpdateId": m.update_id, "bids": [[num(p), num(q)] for p, q in bids[:levels]],
                     "asks": [[num(p), num(q)] for p, q in asks[:levels]]}]
        return [diff]

    def publish_user(self, notices: list[Notice]) -> None:
        """Account notices to every user data stream subscription."""
        subscribed = [c for c in self.connections if c.channel == "user" and c.subscriptions]
        for notice in notices:
            self.execution_id += 1
            event = user_event(notice, self.execution_id)
            for conn in subscribed:
                for sid in sorted(conn.subscriptions):
                    self._send_data(conn, json.dumps({"subscriptionId": sid, "event": event}, separators=(",", ":")))

    def _send_data(self, conn: Connection, frame: str) -> None:
        """Queue a data frame, unless a fault drops, doubles or replaces it, or the connection is stalled."""
        if conn.stalled():
            conn.frames_dropped += 1
            return
        rule = self.faults.draw_ws(conn.channel)
        if rule is not None:
            if rule.kind == "ws_drop":
                conn.frames_dropped += 1
                return
            if rule.kind == "ws_close":
                self._put(conn, int(rule.value))
                return
            if rule.kind == "ws_stall":
                self.stall(conn, rule.value)
                conn.frames_dropped += 1
                return
            if rule.kind == "ws_duplicate":
                self._put(conn, frame)
        self._put(conn, frame)

    def _put(self, conn: Connection, item: str | int) -> None:
        try:
            conn.queue.put_nowait(item)
        except asyncio.QueueFull:
            conn.stalled_until = math.inf
            asyncio.get_running_loop().create_task(conn.ws.close(code=1008, message=b"consumer too slow"))

    # ---- control -------------------------------------------------------------------------------------------

    def matching(self, target: str) -> list[Connection]:
        return [c for c in self.connections if target in ("all", c.channel)]

    def close(self, target: str, code: int = 1011) -> int:
        """Close every connection of a channel now (after what is already queued); how many."""
        conns = self.matching(target)
        for c in conns:
            self._put(c, code)
        return len(conns)

    @staticmethod
    def stall(conn: Connection, seconds: float) -> None:
        conn.stalled_until = math.inf if seconds <= 0 else time.monotonic() + seconds

    def stall_all(self, target: str, seconds: float) -> int:
        conns = self.matching(target)
        for c in conns:
            self.stall(c, seconds)
        return len(conns)

    def clear_stalls(self) -> None:
        for c in self.connections:
            c.stalled_until = None

    def view(self) -> list[dict[str, Any]]:
        return [c.view() for c in self.connections]
