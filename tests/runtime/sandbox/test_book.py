"""The sandbox's account in-process: client-id rule both ways, matching on the next unit, volume caps, fees, funds."""
from decimal import Decimal as D

import pytest

from runtime.sandbox.book import Book, OrderRequest, Reject
from runtime.sandbox.market import Instrument, MarketUnit, Print

INST = Instrument("BTCUSDT.BINANCE", "BTCUSDT", "BTC", "USDT", D("0.01"), D("0.001"), D("0.001"), D(100),
                  D(10), D("0.001"), D("0.002"), 2, 3)


class Clock:
    def __init__(self):
        self.ms = 1_000

    def __call__(self) -> int:
        return self.ms


def book(balances=None, last="100"):
    clock = Clock()
    ids = iter(range(1, 10**6))
    b = Book({"BTCUSDT": INST}, balances or {"USDT": D(10000), "BTC": D(5)}, seed=1, market_ms=clock,
             server_ms=clock, trade_id=lambda s: next(ids), last_price=lambda s: D(last))
    notices = []
    b.sink = notices.extend
    return b, clock, notices


def free(b):
    return {a: f for a, f, _ in b.balances()}


def locked(b):
    return {a: lk for a, _, lk in b.balances()}


def bar(o, h, l, c, volume="10", t=60_000):
    from handlers.venues.sim.fills import bar_path

    path = bar_path(D(o), D(h), D(l), D(c))
    return MarketUnit("BTCUSDT", t, "bar", path, D(volume), (), (), 60_000, True)


def trade(price, qty, t=60_000):
    return MarketUnit("BTCUSDT", t, "trade", (D(price),), D(qty), (Print(1, D(price), D(qty), t, False),), (),
                      60_000, True)


def limit(side, qty, price, cid=None, tif="GTC"):
    return OrderRequest("BTCUSDT", side, "LIMIT", D(qty), D(price), tif, cid)


def market(side, qty, cid=None):
    return OrderRequest("BTCUSDT", side, "MARKET", D(qty), None, None, cid)


def test_client_id_is_unique_among_open_orders_only():
    b, _, _ = book()
    first = b.place(limit("BUY", "1", "90", "c1"))
    with pytest.raises(Reject) as e:
        b.place(limit("BUY", "1", "91", "c1"))
    assert e.value.reason == "duplicate_order"
    b.on_market(bar("95", "96", "89", "95"))  # trades through 90: the first order fills
    assert first.status == "FILLED"
    second = b.place(limit("BUY", "1", "80", "c1"))  # the id is free again: a second order, a new order id
    assert second.order_id > first.order_id and second.status == "NEW"
    assert [o.client_order_id for o in b.orders.values()] == ["c1", "c1"]
    assert b.find("BTCUSDT", None, "c1") is second  # a lookup by client id finds the latest


def test_canceled_order_frees_its_client_id_too():
    b, _, _ = book()
    b.place(limit("SELL", "1", "120", "c2"))
    b.cancel("BTCUSDT", None, "c2")
    assert b.place(limit("SELL", "1", "121", "c2")).status == "NEW"


def test_market_order_fills_at_the_next_units_open_as_taker_with_fee_in_base():
    b, _, notices = book()
    o = b.place(market("BUY", "2"))
    assert o.status == "NEW" and o.locked == D(200)  # 2 x last price 100
    b.on_market(bar("101", "103", "100", "102"))
    assert o.status == "FILLED" and o.cum_quote == D(202)
    (t,) = o.trades
    assert (t.price, t.qty, t.is_maker, t.commission, t.commission_asset) == (D(101), D(2), False, D("0.004"), "BTC")
    assert free(b) == {"BTC": D("6.996"), "USDT": D(9798)}
    assert [type(n).__name__ for n in notices] == ["Execution", "AccountUpdate", "Execution", "AccountUpdate"]


def test_resting_limit_fills_at_its_limit_as_maker_when_the_path_trades_through():
    b, _, _ = book()
    o = b.place(limit("SELL", "1", "105"))
    b.on_market(bar("101", "104", "100", "103"))  # never reaches 105
    assert o.status == "NEW"
    b.on_market(bar("103", "106", "102", "104"))
    assert o.status == "FILLED" and o.trades[0].price == D(105) and o.trades[0].is_maker
    assert o.trades[0].commission == D("0.105") and o.trades[0].commission_asset == "USDT"  # 105 x 0.001


def test_gap_through_a_resting_limit_fills_at_the_open():
    b, _, _ = book()
    o = b.place(limit("BUY", "1", "99"))
    b.on_market(bar("100", "101", "99.5", "100.5"))
    b.on_market(bar("97", "98", "96", "97.5"))
    assert o.trades[0].price == D(97) and o.trades[0].is_maker
    assert locked(b)["USDT"] == 0  # the lock at 99 is gone, 2 refunded
    assert free(b)["USDT"] == D(9903)


def test_fills_are_capped_by_the_units_volume_and_continue_later():
    b, _, _ = book()
    o = b.place(market("SELL", "3"))
    b.on_market(trade("100", "1.2"))
    assert o.status == "PARTIALLY_FILLED" and o.executed_qty == D("1.2")
    b.on_market(trade("99", "5"))
    assert o.status == "FILLED" and [t.qty for t in o.trades] == [D("1.2"), D("1.8")]
    assert [t.trade_id for t in o.trades] == sorted(t.trade_id for t in o.trades)


def test_orders_share_a_unit_in_path_order_then_id():
    b, _, _ = book()
    a = b.place(limit("BUY", "1", "98"))
    c = b.place(limit("BUY", "1", "99"))  # reached first on the way down
    b.on_market(bar("100", "100.5", "97", "97.5", volume="1.5"))
    assert c.executed_qty == D(1) and a.executed_qty == D("0.5")


def test_ioc_fills_at_first_contact_and_expires_the_rest_fok_all_or_nothing():
    b, _, _ = book()
    ioc = b.place(limit("BUY", "2", "101", tif="IOC"))
    fok = b.place(limit("BUY", "2", "101", tif="FOK"))
    b.on_market(trade("100", "1.5"))
    assert (ioc.status, ioc.executed_qty) == ("EXPIRED", D("1.5"))
    assert (fok.status, fok.executed_qty) == ("EXPIRED", D(0))
    away = b.place(limit("BUY", "1", "90", tif="IOC"))
    b.on_market(trade("100", "5"))
    assert away.status == "EXPIRED" and not away.trades


def test_funds_filters_and_ids():
    b, _, _ = book()
    with pytest.raises(Reject) as e:
        b.place(limit("BUY", "60", "200"))  # 12000 USDT > 10000
    assert e.value.reason == "insufficient_balance"
    with pytest.raises(Reject) as e:
        b.place(limit("SELL", "6", "100"))
    assert e.value.reason == "insufficient_balance"
    for req, detail in [(limit("BUY", "1", "100.001"), "PRICE_FILTER"), (limit("BUY", "0.0015", "100"), "LOT_SIZE"),
                        (limit("BUY", "0.05", "100"), "NOTIONAL"), (limit("BUY", "101", "1"), "LOT_SIZE")]:
        with pytest.raises(Reject) as e:
            b.place(req)
        assert (e.value.reason, e.value.detail) == ("filter", detail)
    with pytest.raises(Reject) as e:
        b.place(OrderRequest("ETHUSDT", "BUY", "MARKET", D(1)))
    assert e.value.reason == "unknown_symbol"
    ids = [b.place(limit("BUY", "1", "50")).order_id for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert locked(b)["USDT"] == D(150)
    b.cancel_all("BTCUSDT")
    assert locked(b)["USDT"] == 0


def test_market_buy_that_cannot_pay_the_price_it_meets_expires_for_the_rest():
    b, _, _ = book(balances={"USDT": D(1000), "BTC": D(0)})
    o = b.place(market("BUY", "9"))  # locks 900 at last 100; meets 150
    b.on_market(trade("150", "100"))
    assert o.status == "EXPIRED" and o.executed_qty == D("6.666")  # 1000 / 150, in lot steps
    assert free(b)["USDT"] == D("0.1") and locked(b)["USDT"] == 0


def test_generated_client_ids_follow_the_seed():
    b1, _, _ = book()
    b2, _, _ = book()
    assert [b1.place(limit("BUY", "1", "50")).client_order_id for _ in range(3)] == \
           [b2.place(limit("BUY", "1", "50")).client_order_id for _ in range(3)]
