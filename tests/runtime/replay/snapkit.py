"""Builders for the snapshot and replay tests: random legal logs, a live-like engine namespace."""
from __future__ import annotations

import decimal
import random
from decimal import Decimal
from typing import Any

from eventstore.store import Log
from eventstore.writer import Draft
from handlers.venues.sim.config import parse_venue_config

D = Decimal
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
MINUTE = 60_000_000_000
HOUR = 60 * MINUTE


def instrument(iid: str, kind: str = "SPOT", base: str = "BTC", quote: str = "USDT", settlement: str | None = None,
               price_increment: str = "0.01", size_increment: str = "0.001") -> dict[str, Any]:
    return {"instrument_id": iid, "venue": "SIM", "symbol": iid.split(".")[0], "kind": kind, "base_currency": base,
            "quote_currency": quote, "settlement_currency": settlement or quote,
            "price_increment": D(price_increment), "size_increment": D(size_increment), "price_precision": 2,
            "size_precision": 3, "min_quantity": D(size_increment), "max_quantity": None, "min_notional": None,
            "maker_fee": D("0.001"), "taker_fee": D("0.001"), "multiplier": D(1)}


def bar(iid: str, close: Decimal, ts: int, timeframe: str = "1m") -> dict[str, Any]:
    return {"instrument_id": iid, "timeframe": timeframe, "open_ts": ts - MINUTE, "open": close, "high": close,
            "low": close, "close": close, "volume": D(1), "trades": None}


def submitted(cid: str, iid: str, side: str, qty: Decimal, order_type: str = "MARKET",
              price: Decimal | None = None) -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue": "SIM", "strategy_id": "t", "side": side,
            "order_type": order_type, "quantity": qty, "price": price, "trigger_price": None, "time_in_force": "GTC",
            "expire_ts": None, "post_only": False, "reduce_only": False}


def intent(cid: str, iid: str, side: str, qty: Decimal) -> dict[str, Any]:
    d = submitted(cid, iid, side, qty)
    del d["venue"]
    d["tags"] = None
    return d


def fill(cid: str, iid: str, side: str, qty: Decimal, price: Decimal, fee: Decimal, fee_currency: str,
         trade_id: str) -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue_order_id": None, "trade_id": trade_id, "side": side,
            "last_price": price, "last_quantity": qty, "fee": fee, "fee_currency": fee_currency,
            "liquidity_side": "TAKER"}


def account(**balances: str) -> dict[str, Any]:
    return {"venue": "SIM", "reported": True,
            "balances": [{"currency": c, "total": D(v), "free": D(v), "locked": D(0)} for c, v in balances.items()]}


INSTRUMENTS = [
    (instrument("BTCUSDT.SIM"), D(40000), "USDT"),
    (instrument("ETHBTC.SIM", base="ETH", quote="BTC", price_increment="0.00001"), D("0.05"), "BTC"),
    (instrument("BTCPERP.SIM", kind="PERPETUAL", base="BTC", quote="USDT", settlement="USDT"), D(40000), "USDT"),
]


def random_log(ops: list[tuple[int, int, int, int]]) -> list[tuple[str, dict[str, Any], int]]:
    """A legal event sequence from random numbers: instruments, bars/trades/quotes, intents and risk verdicts,
    orders through submission, acks, partial fills and cancels, account states, trading state changes, day
    boundaries. Interprets each (op, a, b, c); an op that would be illegal is skipped."""
    out: list[tuple[str, dict[str, Any], int]] = []
    ts = T0
    defined: list[int] = []
    orders: list[dict[str, Any]] = []  # cid, iid, side, leaves, status
    intents: list[dict[str, Any]] = []  # awaiting verdict or accepted, not submitted
    n = 0

    def price(i: int, x: int) -> Decimal:
        inst, base, _ = INSTRUMENTS[i]
        inc = inst["price_increment"]
        return (base * (1 + D(x - 500) / 2000) / inc).to_integral_value() * inc

    for op, a, b, c in ops:
        ts += (c % 5) * MINUTE + 1
        i = a % len(INSTRUMENTS)
        if i not in defined:
            defined.append(i)
            out.append(("InstrumentDefined", INSTRUMENTS[i][0], ts))
        iid = INSTRUMENTS[i][0]["instrument_id"]
        op %= 12
        n += 1
        if op == 0:
            out.append(("Bar", bar(iid, price(i, b), ts), ts))
        elif op == 1:
            out.append(("TradeTick", {"instrument_id": iid, "price": price(i, b), "quantity": D("0.5"),
                                      "aggressor_side": "BUYER", "trade_id": f"x{n}"}, ts))
        elif op == 2:
            bid = price(i, b)
            ask = bid + INSTRUMENTS[i][0]["price_increment"] * (1 + c % 3)
            out.append(("QuoteTick", {"instrument_id": iid, "bid_price": bid, "bid_size": D(1), "ask_price": ask,
                                      "ask_size": D(2)}, ts))
        elif op == 3:  # an intent; its verdict and submission come with op 4
            side = "BUY" if b % 2 else "SELL"
            qty = D(1 + c % 40).scaleb(-2)
            cid = f"c{n}"
            intents.append({"cid": cid, "iid": iid, "side": side, "qty": qty, "accepted": False})
            out.append(("OrderIntent", intent(cid, iid, side, qty), ts))
        elif op == 4 and intents:
            it = intents[b % len(intents)]
            if not it["accepted"] and c % 4 == 0:
                intents.remove(it)
                out.append(("RiskRejected", {"instrument_id": it["iid"], "client_order_id": it["cid"], "intent_id": "x",
                                             "rule": "r", "limit": "1", "value": "2", "reason": "test"}, ts))
            elif not it["accepted"]:
                it["accepted"] = True
                out.append(("RiskAccepted", {"instrument_id": it["iid"], "client_order_id": it["cid"],
                                             "intent_id": "x"}, ts))
            else:
                intents.remove(it)
                limit = c % 2 == 0
                j = next(k for k, (d, _, _) in enumerate(INSTRUMENTS) if d["instrument_id"] == it["iid"])
                out.append(("OrderSubmitted", submitted(it["cid"], it["iid"], it["side"], it["qty"],
                                                        "LIMIT" if limit else "MARKET",
                                                        price(j, b) if limit else None), ts))
                orders.append({"cid": it["cid"], "iid": it["iid"], "side": it["side"], "leaves": it["qty"],
                               "status": "SUBMITTED", "j": j})
        elif op == 5 and orders:
            o = orders[b % len(orders)]
            if o["status"] == "SUBMITTED":
                o["status"] = "ACCEPTED"
                out.append(("OrderAccepted", {"instrument_id": o["iid"], "client_order_id": o["cid"],
                                              "venue_order_id": "v" + o["cid"]}, ts))
        elif op in (6, 7) and orders:
            o = orders[b % len(orders)]
            qty = o["leaves"] if c % 3 == 0 else max(D("0.01"), (o["leaves"] / 2).quantize(D("0.01")))
            qty = min(qty, o["leaves"])
            _, _, quote = INSTRUMENTS[o["j"]]
            fee_cur = "BNB" if c % 11 == 0 else quote
            fee = D(c % 7).scaleb(-4)
            out.append(("OrderFilled", fill(o["cid"], o["iid"], o["side"], qty, price(o["j"], a), fee, fee_cur,
                                            f"f{n}"), ts))
            o["leaves"] -= qty
            o["status"] = "PARTIALLY_FILLED"
            if not o["leaves"]:
                orders.remove(o)
        elif op == 8 and orders:
            o = orders[b % len(orders)]
            orders.remove(o)
            out.append(("OrderCanceled", {"instrument_id": o["iid"], "client_order_id": o["cid"], "venue_order_id": None,
                                          "reason": "test"}, ts))
        elif op == 9:
            bal = {"USDT": str(1000 + b), "BTC": str(D(c % 10).scaleb(-1))}
            if c % 4 == 0:
                bal["BNB"] = "1"
            out.append(("AccountState", account(**bal), ts))
        elif op == 10:
            states = ["ACTIVE", "REDUCING", "HALTED"]
            out.append(("TradingStateChanged", {"state": states[b % 3], "previous": "ACTIVE", "reason": "test",
                                                "incident_id": None}, ts))
        elif op == 11:
            ts += (b % 30) * HOUR  # crosses UTC days
    return out


def write_log(log: Log, namespace: str, events: list[tuple[str, dict[str, Any], int]], step: int = 3) -> None:
    """Write events with the namespace's writer, `step` events per atomic step."""
    with log.writer(namespace, fsync="never") as w:
        drafts = [Draft(name, dict(data), ts, data.get("instrument_id") or data.get("venue") or "", "test")
                  for name, data, ts in events]
        w.append_steps([drafts[i:i + step] for i in range(0, len(drafts), step)])


def live_like(log: Log, namespace: str, bars: int, *, snapshot_every: int, strategy: str = "market_maker",
              params: dict[str, str] | None = None, seed: int = 5, group: int = 200) -> Any:
    """A live-like namespace: the engine records its own market inputs (instrument, bars) with the orders and fills
    they cause, through the simulated venue; returns the engine (its state is the live state at the end)."""
    from handlers.queue import OutboundQueue, QueueConfig
    from handlers.risk.engine import RiskEngine
    from handlers.strategy import load_strategy, parse_params
    from handlers.venues.sim.venue import SimulatedVenue
    from projections.state import State
    from runtime.engine.loop import Engine

    rng = random.Random(seed)
    inst = instrument("BTCUSDT.SIM")
    cls = load_strategy(strategy)
    state = State()
    venue = SimulatedVenue(parse_venue_config({"starting_balances": {"USDT": "1000000", "BTC": "10"},
                                               "account_type": "cash"}), state)
    writer = log.writer(namespace, fsync="never")
    with decimal.localcontext(prec=60), writer:
        engine = Engine(writer=writer, state=state, strategy_cls=cls, params=parse_params(cls, params or {}),
                        risk=RiskEngine(), queue=OutboundQueue(QueueConfig(venue=venue.name)), venue=venue,
                        strategy_id=cls.name, record_inputs=True, group=group, snapshot_every=snapshot_every)
        engine.process("InstrumentDefined", inst, T0)
        engine.start(T0)
        px = 4_000_000
        for k in range(bars):
            px += rng.randint(-400, 400)
            ts = T0 + (k + 1) * MINUTE
            close = D(px).scaleb(-2)
            engine.process("Bar", {"instrument_id": inst["instrument_id"], "timeframe": "1m", "open_ts": ts - MINUTE,
                                   "open": close, "high": close + D("5"), "low": close - D("5"), "close": close,
                                   "volume": D(3), "trades": None}, ts)
        engine.stop()
    return engine
