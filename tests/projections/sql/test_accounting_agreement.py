"""The engine's fold and the SQL read model book every fill by one rule: same positions, PnL and balances.

They once diverged: the SQL copy ignored the contract multiplier, so a multiplier-10 perpetual (buy 1 @ 100,
sell 1 @ 110) booked 100 in the engine and 10 in `tape project`.
"""
from __future__ import annotations

import random
from decimal import Decimal

from sqlkit import rows

from eventstore.writer import Draft
from projections.sql import models as m
from projections.sql.projector import project
from projections.state import State

D = Decimal
T0 = 1_700_000_000_000_000_000
PERP, SPOT = "BTCPERP.SIM", "ETHUSDT.SIM"


def _instrument(iid: str, kind: str, base: str, multiplier: str) -> dict:
    return {"instrument_id": iid, "venue": "SIM", "symbol": iid.split(".")[0], "kind": kind, "base_currency": base,
            "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": D("0.01"),
            "size_increment": D("0.001"), "price_precision": 2, "size_precision": 3, "min_quantity": D("0.001"),
            "max_quantity": None, "min_notional": None, "maker_fee": D(0), "taker_fee": D(0),
            "multiplier": D(multiplier)}


def _fill(n: int, iid: str, side: str, px: str, qty: str, fee: str) -> list[Draft]:
    """A market order and its one fill."""
    order = {"instrument_id": iid, "client_order_id": f"c{n}", "venue": "SIM", "strategy_id": "t", "side": side,
             "order_type": "MARKET", "quantity": D(qty), "price": None, "trigger_price": None,
             "time_in_force": "GTC", "expire_ts": None, "post_only": False, "reduce_only": False}
    return [Draft("OrderSubmitted", order, ts_event=T0 + n, key=iid, source="test"), Draft("OrderFilled", {"instrument_id": iid, "client_order_id": f"c{n}", "venue_order_id": None,
                                 "trade_id": f"t{n}", "side": side, "last_price": D(px), "last_quantity": D(qty),
                                 "fee": D(fee), "fee_currency": "USDT", "liquidity_side": "TAKER"},
                 ts_event=T0 + n, key=iid, source="test")]


def _write(log, ns: str, orders: list[list[Draft]]) -> None:
    w = log.writer(ns)
    w.append_steps([[Draft("InstrumentDefined", _instrument(PERP, "PERPETUAL", "BTC", "10"), T0, PERP, "test"),
                     Draft("InstrumentDefined", _instrument(SPOT, "SPOT", "ETH", "1"), T0, SPOT, "test"),
                     Draft("AccountState", {"venue": "SIM", "reported": True, "balances": [
                         {"currency": "USDT", "total": D(1000), "free": D(1000), "locked": D(0)}]}, T0, "SIM", "test")],
                    *orders])
    w.close()


def _engine_fold(log, ns: str) -> State:
    state = State()
    for e in log.replay(ns):
        state.apply(e.name, e.data, e.ts_event)
    return state


def _agree(db, log, ns: str) -> State:
    state = _engine_fold(log, ns)
    project(log, db, ns)
    positions = rows(db, m.positions, ns)
    balances = rows(db, m.balances, ns)
    for iid, pos in state.portfolio.positions.items():
        row = positions[iid]
        assert (row["quantity"], row["realized_pnl"]) == (pos.quantity, pos.realized_pnl), iid
        assert row["avg_price"] == (pos.avg_price if pos.quantity else None), iid
    assert {k: r["total"] for k, r in balances.items() if r["total"]} == \
        {c: v for c, v in state.portfolio.balances.items() if v}
    return state


def test_a_multiplier_10_contract_books_the_same_pnl_in_both(db, sql_log):
    _write(sql_log, "mult", [_fill(1, PERP, "BUY", "100", "1", "0"), _fill(2, PERP, "SELL", "110", "1", "0")])
    state = _agree(db, sql_log, "mult")
    assert state.portfolio.realized_pnl(PERP) == D(100)
    assert state.portfolio.balances["USDT"] == D(1100)


def test_random_fills_agree(db, sql_log):
    rng = random.Random(7)
    fills = []
    for n in range(1, 400):
        iid = rng.choice((PERP, SPOT))
        px = D(rng.randint(9000, 11000)).scaleb(-2)
        qty = D(rng.randint(1, 3000)).scaleb(-3)
        fee = (px * qty * D("0.0004")).quantize(D("0.00000001"))
        fills.append(_fill(n, iid, rng.choice(("BUY", "SELL")), str(px), str(qty), str(fee)))
    _write(sql_log, "rand", fills)
    state = _agree(db, sql_log, "rand")
    assert state.portfolio.realized_pnl(PERP) != 0 and state.portfolio.positions[PERP].fill_count > 100
