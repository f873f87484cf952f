"""The row fold of the read models on its own, without a database: its dispatch table and one order's rows."""
from __future__ import annotations

import decimal
from decimal import Decimal

from eventstore.catalog import Catalog
from projections.sql import models as m
from projections.sql.fold import HANDLERS, ORDER_EVENTS, ReadModelFold
from schemas.decimals import ARITHMETIC
from schemas.names import ORDER_CHAIN

D = Decimal
BTC = "BTCUSDT.SIM"


def test_every_event_of_an_order_but_the_cancel_request_has_a_handler():
    assert set(ORDER_CHAIN) - set(HANDLERS) == {"CancelIntent"}
    assert set(ORDER_EVENTS) == set(ORDER_CHAIN) - {"CancelIntent"}
    catalog = Catalog.load()
    assert [n for n in HANDLERS if n not in catalog.by_name] == []


def test_one_order_folds_to_its_rows_and_other_events_are_ignored():
    fold = ReadModelFold("ns")
    order = {"instrument_id": BTC, "client_order_id": "o1", "strategy_id": "s", "side": "BUY", "order_type": "LIMIT",
             "quantity": D("1"), "price": D("100"), "time_in_force": "GTC"}
    with decimal.localcontext(ARITHMETIC):
        fold.apply("OrderIntent", {**order, "envelope": {"event_id": "ns:1"}}, 1, 10)
        fold.apply("RiskAccepted", {"instrument_id": BTC, "client_order_id": "o1", "intent_id": "ns:1"}, 2, 11)
        fold.apply("OrderSubmitted", {**order, "venue": "SIM"}, 3, 12)
        fold.apply("TradeTick", {"instrument_id": BTC, "price": D("100")}, 4, 13)
        fold.apply("OrderFilled", {"instrument_id": BTC, "client_order_id": "o1", "venue_order_id": "v1",
                                   "trade_id": "t1", "side": "BUY", "last_price": D("100"), "last_quantity": D("1"),
                                   "fee": D("0.1"), "fee_currency": "USDT"}, 5, 14)
    changes = fold.take_changes()
    assert set(changes) == {m.orders, m.positions, m.balances, m.fills, m.risk_decisions}
    [row] = changes[m.orders]
    assert (row["status"], row["filled_quantity"], row["avg_fill_price"], row["venue_order_id"], row["last_seq"]) == (
        "FILLED", D("1"), D("100"), "v1", 5)
    [pos] = changes[m.positions]
    assert (pos["quantity"], pos["avg_price"], pos["fees"], pos["fills"]) == (D("1"), D("100"), D("0.1"), 1)
    assert {b["currency"]: b["total"] for b in changes[m.balances]} == {"BTC": D("1"), "USDT": D("-100.1")}
    assert fold.take_changes() == {}  # the change sets are cleared
