"""The simulated venue: every fill rule, latency, volume caps, fees, rejects, expiry — hand-computed cases."""
from __future__ import annotations

import decimal
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from eventstore.errors import TapeError
from handlers.venues.sim.config import parse_venue_config
from handlers.venues.sim.fills import bar_path, plan_fill
from handlers.venues.sim.venue import SimulatedVenue
from projections.market import MarketState

D = Decimal
IID = "BTCUSDT.SIM"
S = 1_000_000_000
MIN = 60 * S
T0 = 1_700_006_400 * S  # 2023-11-15T00:00:00Z, a UTC midnight


def instrument(iid: str = IID, kind: str = "SPOT", maker: str = "0.001", taker: str = "0.002") -> dict[str, Any]:
    return {"instrument_id": iid, "venue": "SIM", "symbol": iid.split(".")[0], "kind": kind,
            "base_currency": "BTC", "quote_currency": "USDT", "settlement_currency": "USDT",
            "price_increment": D("0.01"), "size_increment": D("0.001"), "price_precision": 2, "size_precision": 3,
            "min_quantity": D("0.001"), "max_quantity": None, "min_notional": None, "maker_fee": D(maker),
            "taker_fee": D(taker), "multiplier": D(1)}


def bar(i: int, o: str, h: str, lo: str, c: str, v: str = "1000") -> tuple[str, dict[str, Any], int]:
    """Bar i covers [T0 + i min, T0 + (i+1) min); its ts_event is its close time."""
    open_ts = T0 + i * MIN
    return ("Bar", {"instrument_id": IID, "timeframe": "1m", "open_ts": open_ts, "open": D(o), "high": D(h),
                    "low": D(lo), "close": D(c), "volume": D(v), "trades": None}, open_ts + MIN)


def trade(ts: int, price: str, qty: str = "10") -> tuple[str, dict[str, Any], int]:
    return ("TradeTick", {"instrument_id": IID, "price": D(price), "quantity": D(qty),
                          "aggressor_side": "BUYER", "trade_id": None}, ts)


def quote(ts: int, bid: str, ask: str, bid_size: str = "10", ask_size: str = "10") -> tuple[str, dict[str, Any], int]:
    return ("QuoteTick", {"instrument_id": IID, "bid_price": D(bid), "bid_size": D(bid_size),
                          "ask_price": D(ask), "ask_size": D(ask_size)}, ts)


def order(cid: str, side: str = "BUY", qty: str = "1", order_type: str = "MARKET", price: str | None = None,
          trigger: str | None = None, tif: str = "GTC", expire_ts: int | None = None, post_only: bool = False,
          reduce_only: bool = False, iid: str = IID) -> dict[str, Any]:
    return {"instrument_id": iid, "client_order_id": cid, "venue": "SIM", "strategy_id": "t", "side": side,
            "order_type": order_type, "quantity": D(qty), "price": D(price) if price else None,
            "trigger_price": D(trigger) if trigger else None, "time_in_force": tif, "expire_ts": expire_ts,
            "post_only": post_only, "reduce_only": reduce_only}


class Sim:
    """The venue as the engine drives it: market data is applied to the market state before on_market."""

    def __init__(self, config: dict[str, Any] | None = None, **inst: str):
        self.market = MarketState()
        self.market.apply("InstrumentDefined", instrument(**inst), 0)
        cfg = {"starting_balances": {"USDT": "100000", "BTC": "10"}, **(config or {})}
        self.venue = SimulatedVenue(parse_venue_config(cfg), SimpleNamespace(market=self.market))
        self.events: list[tuple[str, dict[str, Any], int]] = list(self.venue.start(T0))

    def feed(self, item: tuple[str, dict[str, Any], int]) -> list[tuple[str, dict[str, Any], int]]:
        name, data, ts = item
        self.market.apply(name, data, ts)
        out = self.venue.on_market(name, data, ts)
        self.events += out
        return out

    def submit(self, o: dict[str, Any], now: int) -> list[tuple[str, dict[str, Any], int]]:
        out = self.venue.submit(o, now)
        self.events += out
        return out

    def cancel(self, cid: str, now: int, iid: str = IID) -> list[tuple[str, dict[str, Any], int]]:
        out = self.venue.cancel(iid, cid, now)
        self.events += out
        return out


def names(events: list) -> list[str]:
    return [e[0] for e in events]


def fills(events: list) -> list[tuple[str, Decimal, Decimal, str, int]]:
    """(client order id, price, quantity, liquidity, ts) of every fill."""
    return [(e[1]["client_order_id"], e[1]["last_price"], e[1]["last_quantity"], e[1]["liquidity_side"], e[2])
            for e in events if e[0] == "OrderFilled"]


@pytest.fixture(autouse=True)
def engine_context():
    """The engine runs under prec=60; so do the tests (the venue also guards its own arithmetic)."""
    with decimal.localcontext(prec=60):
        yield


# ---- start, accept ---------------------------------------------------------------------------------------


def test_start_reports_starting_balances():
    sim = Sim()
    assert sim.events == [("AccountState", {"venue": "SIM", "reported": True, "balances": [
        {"currency": "BTC", "total": D(10), "free": D(10), "locked": D(0)},
        {"currency": "USDT", "total": D(100000), "free": D(100000), "locked": D(0)}]}, T0)]


def test_default_balances_are_a_million_per_quote_currency():
    market = MarketState()
    market.apply("InstrumentDefined", instrument(), 0)
    venue = SimulatedVenue(parse_venue_config({}), SimpleNamespace(market=market))
    (_, payload, _), = venue.start(T0)
    assert venue.name == "SIM"
    assert payload["balances"] == [{"currency": "USDT", "total": D(1_000_000), "free": D(1_000_000), "locked": D(0)}]


# ---- market orders -----------------------------------------------------------------------------------------


def test_market_next_open_fills_at_the_next_bars_open_as_taker():
    sim = Sim()
    sim.feed(bar(0, "100", "102", "99", "101"))
    out = sim.submit(order("m1", qty="2"), T0 + MIN)
    assert out == [("OrderAccepted", {"instrument_id": IID, "client_order_id": "m1", "venue_order_id": "SIM-O1"},
                    T0 + MIN)]
    out = sim.feed(bar(1, "100.5", "103", "100", "102"))
    assert out == [("OrderFilled", {"instrument_id": IID, "client_order_id": "m1", "venue_order_id": "SIM-O1",
                                    "trade_id": "SIM-1", "side": "BUY", "last_price": D("100.5"),
                                    "last_quantity": D(2), "fee": D("0.402"), "fee_currency": "USDT",
                                    "liquidity_side": "TAKER"}, T0 + MIN)]  # 100.5 * 2 * 0.002; ts = open_ts


def test_market_same_close_fills_in_submit_at_the_last_close():
    sim = Sim({"market_fill": "same_close"})
    sim.feed(bar(0, "100", "102", "99", "101"))
    out = sim.submit(order("m1", side="SELL", qty="1"), T0 + MIN)
    assert names(out) == ["OrderAccepted", "OrderFilled"]
    assert fills(out) == [("m1", D(101), D(1), "TAKER", T0 + MIN)]
    assert out[1][1]["fee"] == D("0.202")
    assert sim.feed(bar(1, "90", "91", "89", "90")) == []


def test_market_same_close_without_a_price_waits_for_the_next_event():
    sim = Sim({"market_fill": "same_close"})
    assert names(sim.submit(order("m1"), T0)) == ["OrderAccepted"]
    assert fills(sim.feed(bar(0, "100", "102", "99", "101"))) == [("m1", D(100), D(1), "TAKER", T0)]


def test_market_orders_on_trades_and_quotes():
    sim = Sim()
    sim.feed(trade(T0, "100"))
    sim.submit(order("b"), T0)
    sim.submit(order("s", side="SELL"), T0)
    assert fills(sim.feed(trade(T0 + S, "100.7"))) == [("b", D("100.7"), D(1), "TAKER", T0 + S),
                                                      ("s", D("100.7"), D(1), "TAKER", T0 + S)]
    sim.submit(order("b2"), T0 + S)
    sim.submit(order("s2", side="SELL"), T0 + S)
    assert fills(sim.feed(quote(T0 + 2 * S, bid="99.9", ask="100.1"))) == [
        ("b2", D("100.1"), D(1), "TAKER", T0 + 2 * S), ("s2", D("99.9"), D(1), "TAKER", T0 + 2 * S)]


# ---- limit orders against bars -----------------------------------------------------------------------------


def test_bar_paths():
    assert bar_path(D(100), D(105), D(95), D(101)) == (D(100), D(95), D(105), D(101))  # bullish O L H C
    assert bar_path(D(100), D(105), D(95), D(100)) == (D(100), D(95), D(105), D(100))  # close == open: bullish
    assert bar_path(D(100), D(105), D(95), D(99)) == (D(100), D(105), D(95), D(99))  # bearish O H L C


def test_limit_buy_touched_on_the_bar_fills_at_the_limit_as_maker():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99.5", "100"))
    sim.submit(order("l1", order_type="LIMIT", price="99", qty="2"), T0 + MIN)
    assert sim.feed(bar(1, "100", "100.5", "99.01", "100")) == []  # low above the limit
    out = sim.feed(bar(2, "100", "101", "99", "100.5"))  # low == limit: touched
    assert fills(out) == [("l1", D(99), D(2), "MAKER", T0 + 3 * MIN)]  # intrabar fill: ts = bar close
    assert out[0][1]["fee"] == D("0.198")  # 99 * 2 * 0.001 maker


def test_limit_sell_fills_at_the_limit_when_the_high_reaches_it():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("l1", side="SELL", order_type="LIMIT", price="102"), T0 + MIN)
    assert fills(sim.feed(bar(1, "100", "102.5", "99", "99.5"))) == [("l1", D(102), D(1), "MAKER", T0 + 2 * MIN)]


def test_limit_crossing_the_next_open_takes_at_the_open():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("l1", order_type="LIMIT", price="100.5"), T0 + MIN)  # fresh: first contact is the open
    out = sim.feed(bar(1, "100.2", "101", "99", "100"))
    assert fills(out) == [("l1", D("100.2"), D(1), "TAKER", T0 + MIN)]
    assert out[0][1]["fee"] == D("0.2004")


def test_resting_limit_gapped_through_fills_at_the_open_as_maker():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("l1", order_type="LIMIT", price="98"), T0 + MIN)
    assert sim.feed(bar(1, "100", "101", "99", "99.5")) == []  # first contact: rests
    out = sim.feed(bar(2, "97", "97.5", "96", "97"))  # opens below the resting buy
    assert fills(out) == [("l1", D(97), D(1), "MAKER", T0 + 2 * MIN)]
    sim.submit(order("l2", side="SELL", order_type="LIMIT", price="99"), T0 + 3 * MIN)
    sim.feed(bar(3, "97", "98", "96", "97"))
    assert fills(sim.feed(bar(4, "99.5", "100", "99.2", "99.8"))) == [("l2", D("99.5"), D(1), "MAKER", T0 + 4 * MIN)]


def test_intrabar_path_orders_fills_bullish_low_first_bearish_high_first():
    # one unit of volume: whichever the path reaches first takes it
    for o, c, first in (("100", "101", "buy"), ("100", "99", "sell")):
        sim = Sim()
        sim.feed(bar(0, "100", "100.5", "99.5", "100"))
        sim.submit(order("buy", order_type="LIMIT", price="98"), T0 + MIN)
        sim.submit(order("sell", side="SELL", order_type="LIMIT", price="102"), T0 + MIN)
        out = sim.feed(bar(1, o, "103", "97", c, v="1"))
        assert fills(out) == [(first, D(98) if first == "buy" else D(102), D(1), "MAKER", T0 + 2 * MIN)]


# ---- stops -------------------------------------------------------------------------------------------------


def test_stop_market_triggers_on_the_path_and_fills_at_the_trigger():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("s1", order_type="STOP_MARKET", trigger="103"), T0 + MIN)
    assert sim.feed(bar(1, "100", "102.9", "99", "102")) == []
    out = sim.feed(bar(2, "102", "105", "101", "104"))
    assert names(out) == ["OrderTriggered", "OrderFilled"]
    assert fills(out) == [("s1", D(103), D(1), "TAKER", T0 + 3 * MIN)]


def test_stop_market_gapped_fills_at_the_open():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("s1", side="SELL", order_type="STOP_MARKET", trigger="97"), T0 + MIN)
    out = sim.feed(bar(1, "95", "96", "94", "95.5"))  # opens below the sell stop: min(trigger, open) = 95
    assert names(out) == ["OrderTriggered", "OrderFilled"]
    assert fills(out) == [("s1", D(95), D(1), "TAKER", T0 + MIN)]


def test_sell_stop_on_a_bearish_bar_triggers_after_the_high():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("s1", side="SELL", order_type="STOP_MARKET", trigger="98"), T0 + MIN)
    sim.submit(order("l1", side="SELL", order_type="LIMIT", price="102"), T0 + MIN)
    out = sim.feed(bar(1, "100", "102", "97", "97.5"))  # O 100 → H 102 (limit) → L 97 (stop at 98)
    assert fills(out) == [("l1", D(102), D(1), "MAKER", T0 + 2 * MIN), ("s1", D(98), D(1), "TAKER", T0 + 2 * MIN)]


def test_stop_limit_marketable_at_the_trigger_takes_there():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("sl", order_type="STOP_LIMIT", trigger="103", price="103.5"), T0 + MIN)
    out = sim.feed(bar(1, "100", "105", "99", "104"))  # O→L 99→H 105: triggers at 103 <= limit 103.5
    assert names(out) == ["OrderTriggered", "OrderFilled"]
    assert fills(out) == [("sl", D(103), D(1), "TAKER", T0 + 2 * MIN)]


def test_stop_limit_gapped_past_its_limit_rests_then_fills_at_the_limit():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("sl", order_type="STOP_LIMIT", trigger="103", price="103.5"), T0 + MIN)
    # bearish: opens 105 (>= trigger: triggered at the open, 105 > limit) → H 106 → L 102 reaches 103.5
    out = sim.feed(bar(1, "105", "106", "102", "103"))
    assert names(out) == ["OrderTriggered", "OrderFilled"]
    assert fills(out) == [("sl", D("103.5"), D(1), "MAKER", T0 + 2 * MIN)]


def test_stop_limit_triggered_without_fill_works_as_a_limit_on_later_bars():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("sl", order_type="STOP_LIMIT", trigger="103", price="102"), T0 + MIN)
    out = sim.feed(bar(1, "100", "104", "99", "104"))  # triggers at 103 on L→H; never back to 102
    assert names(out) == ["OrderTriggered"]
    assert out[0][2] == T0 + 2 * MIN
    assert fills(sim.feed(bar(2, "101", "103", "100.5", "102"))) == [("sl", D(101), D(1), "MAKER", T0 + 2 * MIN)]


def test_stops_on_trade_ticks_and_quotes():
    sim = Sim()
    sim.feed(trade(T0, "100"))
    sim.submit(order("s1", order_type="STOP_MARKET", trigger="101"), T0)
    assert sim.feed(trade(T0 + S, "100.9")) == []
    out = sim.feed(trade(T0 + 2 * S, "101.2"))
    assert names(out) == ["OrderTriggered", "OrderFilled"] and fills(out)[0][1:3] == (D("101.2"), D(1))
    sim.submit(order("s2", side="SELL", order_type="STOP_MARKET", trigger="99"), T0 + 2 * S)
    assert sim.feed(quote(T0 + 3 * S, bid="99.1", ask="98.5")) == []  # sell stops watch the bid
    assert fills(sim.feed(quote(T0 + 4 * S, bid="98.9", ask="99.2"))) == [("s2", D("98.9"), D(1), "TAKER",
                                                                          T0 + 4 * S)]


# ---- ticks: limits -----------------------------------------------------------------------------------------


def test_limit_orders_on_trades_and_quotes_fill_at_their_limit_as_maker():
    sim = Sim()
    sim.feed(trade(T0, "100"))
    sim.submit(order("l1", order_type="LIMIT", price="99.5"), T0)
    assert sim.feed(trade(T0 + S, "99.6")) == []
    assert fills(sim.feed(trade(T0 + 2 * S, "99.4"))) == [("l1", D("99.5"), D(1), "MAKER", T0 + 2 * S)]
    sim.submit(order("l2", side="SELL", order_type="LIMIT", price="100.5"), T0 + 2 * S)
    assert sim.feed(quote(T0 + 3 * S, bid="100.4", ask="100.6")) == []
    assert fills(sim.feed(quote(T0 + 4 * S, bid="100.7", ask="100.8"))) == [("l2", D("100.5"), D(1), "MAKER",
                                                                            T0 + 4 * S)]


def test_quote_caps_fills_by_the_size_on_the_side_taken():
    sim = Sim()
    sim.feed(quote(T0, bid="99", ask="101"))
    sim.submit(order("b", qty="5"), T0)
    out = sim.feed(quote(T0 + S, bid="99", ask="101", ask_size="2"))
    assert fills(out) == [("b", D(101), D(2), "TAKER", T0 + S)]


# ---- post-only, IOC, FOK -----------------------------------------------------------------------------------


def test_post_only_that_would_take_is_rejected_and_one_that_rests_only_makes():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    out = sim.submit(order("p1", order_type="LIMIT", price="100", post_only=True), T0 + MIN)
    assert out == [("OrderRejected", {"instrument_id": IID, "client_order_id": "p1",
                                      "reason_code": "POST_ONLY_WOULD_TAKE",
                                      "reason": "post-only BUY at 100 crosses the market at 100"}, T0 + MIN)]
    assert sim.submit(order("p2", order_type="MARKET", post_only=True), T0 + MIN)[0][1]["reason_code"] == \
        "POST_ONLY_WOULD_TAKE"
    assert names(sim.submit(order("p3", order_type="LIMIT", price="99.9", post_only=True), T0 + MIN)) == \
        ["OrderAccepted"]
    # the next open is through the limit: a post-only order rested, so it makes (at the open)
    assert fills(sim.feed(bar(1, "99.5", "100", "99", "99.8"))) == [("p3", D("99.5"), D(1), "MAKER", T0 + MIN)]


def test_ioc_fills_what_the_open_allows_and_cancels_the_rest():
    sim = Sim({"volume_participation": "0.5"})
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("i1", qty="3", tif="IOC"), T0 + MIN)
    out = sim.feed(bar(1, "100", "101", "99", "100", v="2"))  # capacity 0.5 * 2 = 1
    assert names(out) == ["OrderFilled", "OrderCanceled"]
    assert fills(out) == [("i1", D(100), D(1), "TAKER", T0 + MIN)]
    assert out[1] == ("OrderCanceled", {"instrument_id": IID, "client_order_id": "i1", "venue_order_id": "SIM-O1",
                                        "reason": "ioc_remainder"}, T0 + MIN)
    # an IOC limit the open does not cross is canceled unfilled, even if the bar later trades through it
    sim.submit(order("i2", order_type="LIMIT", price="99", tif="IOC"), T0 + 2 * MIN)
    out = sim.feed(bar(2, "100", "101", "98", "100"))
    assert names(out) == ["OrderCanceled"] and out[0][1]["reason"] == "ioc_remainder"


def test_ioc_same_close_is_answered_in_submit():
    sim = Sim({"market_fill": "same_close"})
    sim.feed(bar(0, "100", "101", "99", "100", v="0.4"))
    out = sim.submit(order("i1", order_type="LIMIT", price="100", qty="1", tif="IOC"), T0 + MIN)
    assert names(out) == ["OrderAccepted", "OrderFilled", "OrderCanceled"]
    assert fills(out) == [("i1", D(100), D("0.4"), "TAKER", T0 + MIN)]


def test_fok_is_all_or_nothing():
    sim = Sim({"volume_participation": "0.5"})
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("f1", qty="2", tif="FOK"), T0 + MIN)
    sim.submit(order("f2", qty="1", tif="FOK", order_type="LIMIT", price="101"), T0 + MIN)
    out = sim.feed(bar(1, "100", "101", "99", "100", v="2"))  # capacity 1: f1 (2) cannot, f2 (1) can
    assert names(out) == ["OrderCanceled", "OrderFilled"]
    assert out[0][1]["client_order_id"] == "f1" and out[0][1]["reason"] == "fok_not_filled"
    assert fills(out) == [("f2", D(100), D(1), "TAKER", T0 + MIN)]


# ---- expiry ------------------------------------------------------------------------------------------------


def test_gtd_expires_at_expire_ts():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("g1", order_type="LIMIT", price="98", tif="GTD", expire_ts=T0 + 3 * MIN), T0 + MIN)
    assert sim.feed(bar(1, "100", "101", "99", "100")) == []
    # bar 2 closes exactly at expire_ts: it is matched first (no touch here), then the order expires
    out = sim.feed(bar(2, "100", "101", "99", "100"))
    assert out == [("OrderExpired", {"instrument_id": IID, "client_order_id": "g1", "venue_order_id": "SIM-O1"},
                    T0 + 3 * MIN)]
    assert sim.feed(bar(3, "97", "98", "96", "97")) == []


def test_gtd_expiring_inside_a_bar_does_not_fill_on_it():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("g1", order_type="LIMIT", price="98", tif="GTD", expire_ts=T0 + MIN + 30 * S), T0 + MIN)
    out = sim.feed(bar(1, "100", "101", "97", "100"))
    assert names(out) == ["OrderExpired"] and out[0][2] == T0 + MIN + 30 * S


def test_gtd_bar_closing_at_expiry_still_fills():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("g1", order_type="LIMIT", price="98", tif="GTD", expire_ts=T0 + 2 * MIN), T0 + MIN)
    assert names(sim.feed(bar(1, "100", "101", "97", "100"))) == ["OrderFilled"]


def test_day_order_expires_at_the_end_of_the_utc_day_on_ticks():
    sim = Sim()
    sim.feed(trade(T0 + 23 * 3600 * S, "100"))
    sim.submit(order("d1", order_type="LIMIT", price="98", tif="DAY"), T0 + 23 * 3600 * S)
    midnight = T0 + 24 * 3600 * S
    assert sim.feed(trade(midnight - 1, "99")) == []
    out = sim.feed(trade(midnight, "97"))  # at midnight the order is already gone
    assert out == [("OrderExpired", {"instrument_id": IID, "client_order_id": "d1", "venue_order_id": "SIM-O1"},
                    midnight)]


# ---- volume cap and priority --------------------------------------------------------------------------------


def test_volume_cap_is_shared_by_price_then_time_priority():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99.8", "100"))
    sim.submit(order("a", order_type="LIMIT", price="99", qty="0.8"), T0 + MIN)
    sim.submit(order("b", order_type="LIMIT", price="99.5", qty="0.8"), T0 + MIN)
    sim.submit(order("c", order_type="LIMIT", price="99.5", qty="0.8"), T0 + MIN)
    # bullish, volume 1: the path reaches 99.5 (b, then c by time) before 99 (a)
    out = sim.feed(bar(1, "100", "100.5", "98", "100.2", v="1"))
    assert fills(out) == [("b", D("99.5"), D("0.8"), "MAKER", T0 + 2 * MIN),
                          ("c", D("99.5"), D("0.2"), "MAKER", T0 + 2 * MIN)]
    out = sim.feed(bar(2, "100", "100.5", "98", "100.2", v="1"))
    assert fills(out) == [("c", D("99.5"), D("0.6"), "MAKER", T0 + 3 * MIN),
                          ("a", D(99), D("0.4"), "MAKER", T0 + 3 * MIN)]
    out = sim.feed(bar(3, "100", "100.5", "98", "100.2", v="10"))
    assert fills(out) == [("a", D(99), D("0.4"), "MAKER", T0 + 4 * MIN)]


def test_at_the_open_market_orders_come_before_limits_then_better_prices():
    sim = Sim()
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("l1", order_type="LIMIT", price="100.5"), T0 + MIN)
    sim.submit(order("l2", order_type="LIMIT", price="101"), T0 + MIN)
    sim.submit(order("m", order_type="MARKET"), T0 + MIN)
    out = sim.feed(bar(1, "100", "101", "99", "100", v="2"))  # all three cross the open; room for two
    assert fills(out) == [("m", D(100), D(1), "TAKER", T0 + MIN), ("l2", D(100), D(1), "TAKER", T0 + MIN)]


def test_participation_share_and_size_increment_round_down():
    sim = Sim({"volume_participation": "0.1"})
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("m", qty="1"), T0 + MIN)
    assert fills(sim.feed(bar(1, "100", "101", "99", "100", v="3.3339"))) == [("m", D(100), D("0.333"), "TAKER",
                                                                               T0 + MIN)]
    # a market order's remainder keeps taking the first price of later events
    assert fills(sim.feed(bar(2, "101", "102", "100", "101", v="100"))) == [("m", D(101), D("0.667"), "TAKER",
                                                                            T0 + 2 * MIN)]


def test_unlimited_volume_ignores_zero_volume_bars():
    sim = Sim({"volume_participation": "unlimited"})
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("m", qty="50"), T0 + MIN)
    assert fills(sim.feed(bar(1, "100", "101", "99", "100", v="0"))) == [("m", D(100), D(50), "TAKER", T0 + MIN)]


# ---- fees --------------------------------------------------------------------------------------------------


def test_fees_maker_and_taker_from_config_override_the_instrument():
    sim = Sim({"maker_fee": "-0.0001", "taker_fee": "0.0005", "allow_rebates": True})
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("t", qty="3"), T0 + MIN)
    sim.submit(order("m", qty="3", order_type="LIMIT", price="99.5"), T0 + MIN)
    out = sim.feed(bar(1, "100", "101", "99", "100"))
    fees = {e[1]["client_order_id"]: (e[1]["fee"], e[1]["liquidity_side"]) for e in out}
    assert fees == {"t": (D("0.15"), "TAKER"), "m": (D("-0.02985"), "MAKER")}  # 300*0.0005, 298.5*-0.0001
    assert sim.venue.account.balances["USDT"] == D(100000) - D(300) - D("0.15") - D("298.5") + D("0.02985")
    assert sim.venue.account.balances["BTC"] == D(16)


def test_fee_is_quantized_to_18_places():
    sim = Sim({"taker_fee": "0.000000001"})
    sim.feed(trade(T0, "100"))
    sim.submit(order("t", qty="0.001"), T0)
    out = sim.feed(trade(T0 + S, "0.000000000000000007"))
    fee = out[0][1]["fee"]
    assert fee == D("0E-18") and fee.as_tuple().exponent == -18  # 7e-30 rounds to 0 at 18 places


# ---- latency -----------------------------------------------------------------------------------------------


def test_latency_no_acceptance_or_fill_before_arrival():
    sim = Sim({"latency_ms": 90_000})  # 1.5 bars
    sim.feed(bar(0, "100", "101", "99", "100"))
    assert sim.submit(order("m"), T0 + MIN) == []
    assert sim.feed(bar(1, "101", "102", "98", "99")) == []  # closes at T0+2min < arrival T0+2.5min
    out = sim.feed(bar(2, "99", "100", "97", "98"))
    assert names(out) == ["OrderAccepted", "OrderFilled"]
    arrival = T0 + MIN + 90 * S
    assert out[0][2] == arrival
    assert fills(out) == [("m", D(99), D(1), "TAKER", arrival)]  # the bar's open, not before arrival


def test_latency_on_ticks_and_cancel_after_fill_is_rejected():
    sim = Sim({"latency_ns": 500})
    sim.feed(trade(T0, "100"))
    assert sim.submit(order("l", order_type="LIMIT", price="100"), T0) == []
    assert sim.feed(trade(T0 + 499, "99")) == []  # before arrival: neither accepted nor filled
    out = sim.feed(trade(T0 + 500, "99.5"))
    assert names(out) == ["OrderAccepted", "OrderFilled"] and fills(out)[0][1] == D("99.5")  # fresh: takes
    assert sim.cancel("l", T0 + 600) == []
    out = sim.feed(trade(T0 + 1100, "99"))
    assert out == [("OrderCancelRejected", {"instrument_id": IID, "client_order_id": "l",
                                            "venue_order_id": "SIM-O1", "reason": "order already filled"},
                    T0 + 1100)]


def test_cancel_arrives_after_latency_and_fills_can_beat_it():
    sim = Sim({"latency_ns": 10 * S})
    sim.feed(trade(T0, "100"))
    sim.submit(order("l", order_type="LIMIT", price="99", qty="2"), T0)
    sim.feed(trade(T0 + 10 * S, "100"))  # accepted
    sim.cancel("l", T0 + 11 * S)
    out = sim.feed(trade(T0 + 15 * S, "98.5", qty="1"))  # partial fill before the cancel lands
    assert fills(out) == [("l", D(99), D(1), "MAKER", T0 + 15 * S)]
    out = sim.feed(trade(T0 + 21 * S, "98"))
    assert out == [("OrderCanceled", {"instrument_id": IID, "client_order_id": "l", "venue_order_id": "SIM-O1",
                                      "reason": "requested"}, T0 + 21 * S)]


def test_cancel_of_unknown_order_is_rejected_at_once_without_latency():
    sim = Sim()
    assert sim.cancel("nope", T0) == [("OrderCancelRejected", {"instrument_id": IID, "client_order_id": "nope",
                                                               "venue_order_id": None, "reason": "unknown order"},
                                       T0)]


# ---- rejects -----------------------------------------------------------------------------------------------


def test_unknown_instrument_is_rejected():
    sim = Sim()
    out = sim.submit(order("u", iid="ETHUSDT.SIM"), T0)
    assert out == [("OrderRejected", {"instrument_id": "ETHUSDT.SIM", "client_order_id": "u",
                                      "reason_code": "UNKNOWN_INSTRUMENT",
                                      "reason": "instrument ETHUSDT.SIM is not defined on SIM"}, T0)]


def test_insufficient_balance_for_cash_buys_and_sells():
    sim = Sim({"starting_balances": {"USDT": "1000", "BTC": "1"}})
    sim.feed(bar(0, "100", "101", "99", "100"))
    # 10 * 100 * (1 + 0.002) = 1002 > 1000
    out = sim.submit(order("b1", qty="10"), T0 + MIN)
    assert out[0][1]["reason_code"] == "INSUFFICIENT_BALANCE"
    assert out[0][1]["reason"] == "BUY 10 BTCUSDT.SIM needs 1002 USDT, 1000 free"
    # limit buys lock their quote: 4.99 @ 99.8 locks 4.99 * 99.8 * 1.002 = 498.998004 each; after two, 2.003992
    # is free: 0.02 more (1.999992) fits, 0.03 (2.999988) does not
    assert names(sim.submit(order("b2", qty="4.99", order_type="LIMIT", price="99.8"), T0 + MIN)) == ["OrderAccepted"]
    assert names(sim.submit(order("b3", qty="4.99", order_type="LIMIT", price="99.8"), T0 + MIN)) == ["OrderAccepted"]
    out = sim.submit(order("b4", qty="0.03", order_type="LIMIT", price="99.8"), T0 + MIN)
    assert out[0][1]["reason"] == "BUY 0.03 BTCUSDT.SIM needs 2.999988 USDT, 2.003992 free"
    assert names(sim.submit(order("b5", qty="0.02", order_type="LIMIT", price="99.8"), T0 + MIN)) == ["OrderAccepted"]
    # sells need the base currency
    assert sim.submit(order("s1", side="SELL", qty="1.5"), T0 + MIN)[0][1]["reason_code"] == "INSUFFICIENT_BALANCE"
    assert names(sim.submit(order("s2", side="SELL", qty="1"), T0 + MIN)) == ["OrderAccepted"]


def test_margin_account_allows_shorts_up_to_leverage():
    sim = Sim({"account_type": "margin", "leverage": "2", "starting_balances": {"USDT": "1000"}})
    sim.feed(bar(0, "100", "101", "99", "100"))
    assert sim.submit(order("s1", side="SELL", qty="20.01"), T0 + MIN)[0][1]["reason_code"] == "INSUFFICIENT_BALANCE"
    assert names(sim.submit(order("s2", side="SELL", qty="20"), T0 + MIN)) == ["OrderAccepted"]  # 2000 <= 2 * 1000
    sim.feed(bar(1, "100", "101", "99", "100"))
    assert sim.venue.account.balances["BTC"] == D(-20) and sim.venue.account.positions[IID].quantity == D(-20)
    # reducing the short is always allowed
    assert names(sim.submit(order("b1", qty="5"), T0 + 2 * MIN)) == ["OrderAccepted"]


# ---- reduce-only -------------------------------------------------------------------------------------------


def test_reduce_only():
    sim = Sim({"market_fill": "same_close"})
    sim.feed(bar(0, "100", "101", "99", "100"))
    out = sim.submit(order("r0", side="SELL", reduce_only=True), T0 + MIN)
    assert out[0][1]["reason_code"] == "REDUCE_ONLY_WOULD_INCREASE"
    sim.submit(order("b", qty="2"), T0 + MIN)  # long 2
    assert sim.submit(order("r1", qty="1", reduce_only=True), T0 + MIN)[0][1]["reason_code"] == \
        "REDUCE_ONLY_WOULD_INCREASE"  # same side
    assert sim.submit(order("r2", side="SELL", qty="3", reduce_only=True), T0 + MIN)[0][1]["reason_code"] == \
        "REDUCE_ONLY_WOULD_INCREASE"  # would flip
    # two reduce-only limits for the whole position: the second finds nothing left and is canceled
    sim.submit(order("r3", side="SELL", qty="2", order_type="LIMIT", price="105", reduce_only=True), T0 + MIN)
    sim.submit(order("r4", side="SELL", qty="2", order_type="LIMIT", price="106", reduce_only=True), T0 + MIN)
    out = sim.feed(bar(1, "100", "107", "99", "106"))
    assert fills(out) == [("r3", D(105), D(2), "MAKER", T0 + 2 * MIN)]
    assert out[-1][0] == "OrderCanceled" and out[-1][1]["client_order_id"] == "r4"
    assert out[-1][1]["reason"] == "reduce_only"


# ---- invariants ----------------------------------------------------------------------------------------------


def scenario(config: dict[str, Any]) -> list:
    sim = Sim(config)
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("a", order_type="LIMIT", price="99.5", qty="0.7"), T0 + MIN)
    sim.submit(order("b", side="SELL", order_type="STOP_MARKET", trigger="98.5", qty="0.5"), T0 + MIN)
    sim.submit(order("c", qty="0.4", tif="IOC"), T0 + MIN)
    sim.submit(order("d", order_type="LIMIT", price="97", tif="GTD", expire_ts=T0 + 4 * MIN), T0 + MIN)
    for i, (o, h, lo, c) in enumerate([("100", "100.5", "98", "99"), ("99", "99.5", "96", "96.5"),
                                       ("96.5", "98", "96", "97.8"), ("97.8", "99", "97.5", "98.5")], start=1):
        sim.feed(bar(i, o, h, lo, c, v="0.9"))
        if i == 2:
            sim.cancel("a", T0 + 3 * MIN)
    return sim.events


@pytest.mark.parametrize("config", [{}, {"market_fill": "same_close", "latency_ms": 1500},
                                    {"volume_participation": "0.5", "emit_account_state": True}])
def test_determinism_and_legal_order_state_machine(config):
    from projections.orders import Orders

    first, second = scenario(config), scenario(config)
    assert first == second
    assert [repr(e) for e in first] == [repr(e) for e in second]
    orders = Orders()
    for cid in "abcd":
        orders.apply("OrderSubmitted", _submitted(cid), T0 + MIN)
    for name, data, ts in first:
        orders.apply(name, data, ts)  # raises IllegalTransition on any illegal sequence
    assert sum(1 for e in first if e[0] == "OrderFilled") >= 3


def _submitted(cid: str) -> dict[str, Any]:
    return {"a": order("a", order_type="LIMIT", price="99.5", qty="0.7"),
            "b": order("b", side="SELL", order_type="STOP_MARKET", trigger="98.5", qty="0.5"),
            "c": order("c", qty="0.4", tif="IOC"),
            "d": order("d", order_type="LIMIT", price="97", tif="GTD", expire_ts=T0 + 4 * MIN)}[cid]


def test_emit_account_state_after_fills():
    sim = Sim({"emit_account_state": True, "market_fill": "same_close"})
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("l", order_type="LIMIT", price="90"), T0 + MIN)  # locks 90.18 USDT
    out = sim.submit(order("m", qty="2"), T0 + MIN)
    assert names(out) == ["OrderAccepted", "OrderFilled", "AccountState"]
    usdt = D(100000) - D(200) - D("0.4")
    assert out[-1] == ("AccountState", {"venue": "SIM", "reported": True, "balances": [
        {"currency": "BTC", "total": D(12), "free": D(12), "locked": D(0)},
        {"currency": "USDT", "total": usdt, "free": usdt - D("90.18"), "locked": D("90.18")}]}, T0 + MIN)


def test_plan_fill_is_pure():
    path = bar_path(D(100), D(105), D(95), D(101))
    args = dict(buy=True, order_type="LIMIT", limit=D(96), trigger=None, triggered=False, fresh=False, path=path,
                gap_fill_at_first=True)
    assert plan_fill(**args) == plan_fill(**args)
    p = plan_fill(**args)
    assert (p.leg, p.price, p.liquidity, p.key(path)) == (1, D(96), "MAKER", (1, D(4)))


# ---- config ------------------------------------------------------------------------------------------------


def test_parse_validates_every_key():
    with pytest.raises(TapeError, match="unknown key 'latency'"):
        parse_venue_config({"latency": 5})
    vc = parse_venue_config({"latency_ms": 20, "volume_participation": "unlimited", "report_currency": "USDT"})
    assert (vc.latency_ns, vc.volume_participation, vc.report_currency) == (20_000_000, None, "USDT")
    assert parse_venue_config(vc.canonical()) == vc  # what a run records parses back to the same settings


@pytest.mark.parametrize("kind", ["SPOT", "PERPETUAL"])
def test_venue_balances_match_the_portfolio_fold(kind):
    from projections.portfolio import Portfolio

    sim = Sim({"account_type": "margin", "leverage": "5"}, kind=kind)
    portfolio = Portfolio(sim.market)
    sim.feed(bar(0, "100", "101", "99", "100"))
    sim.submit(order("a", qty="3"), T0 + MIN)
    sim.submit(order("b", side="SELL", qty="5", order_type="LIMIT", price="101.5"), T0 + MIN)
    sim.feed(bar(1, "100.2", "102", "99.5", "101.9"))  # a buys 3 at 100.2, b sells 5 at 101.5: short 2
    sim.submit(order("c", qty="2", order_type="LIMIT", price="99.8"), T0 + 2 * MIN)
    sim.feed(bar(2, "101.9", "102", "99", "99.5"))  # c covers at 99.8
    for name, data, ts in sim.events:
        portfolio.apply(name, data, ts)
    assert len(fills(sim.events)) == 3
    assert portfolio.balances == {k: v for k, v in sim.venue.account.balances.items() if v or k in portfolio.balances}
    assert sim.venue.account.positions[IID].quantity == portfolio.position_quantity(IID) == 0
    if kind == "PERPETUAL":  # realized: (101.5 - 100.2) * 3 + (101.5 - 99.8) * 2 = 7.3; fees: 0.6012 + 0.5075 + 0.1996
        assert sim.venue.account.balances["USDT"] == D(100000) + D("7.3") - D("0.6012") - D("0.5075") - D("0.1996")


# ---- finished orders: the latest kept whole, the earlier archived, every answer the same ------------------

PREFIX = "t1a2b3c"
EARLY = {"filled": f"{PREFIX}-11", "canceled": f"{PREFIX}-12", "rejected": f"{PREFIX}-13",
         "expired": f"{PREFIX}-14", "unknown_instrument": f"{PREFIX}-15", "adopted": "adopted-7"}


def finished_history(n: int, *, keep: int | None = None) -> Sim:
    """Orders that ended every way, then n market orders filled at once (engine-style ids, rising by 7)."""
    sim = Sim({"market_fill": "same_close", "volume_participation": "unlimited"})
    if keep is not None:
        sim.venue.KEEP_FINISHED = keep
    sim.feed(trade(T0, "100"))
    sim.submit(order(EARLY["filled"]), T0)
    sim.submit(order(EARLY["canceled"], order_type="LIMIT", price="50"), T0)
    sim.cancel(EARLY["canceled"], T0)
    sim.submit(order(EARLY["rejected"], qty="0"), T0)
    sim.submit(order(EARLY["expired"], order_type="LIMIT", price="50", tif="GTD", expire_ts=T0 + 5 * S), T0)
    sim.submit(order(EARLY["unknown_instrument"], iid="ETHUSDT.SIM"), T0)
    sim.submit(order(EARLY["adopted"], side="SELL"), T0)
    sim.feed(trade(T0 + 6 * S, "100"))  # the GTD order expires
    for i in range(n):
        sim.submit(order(f"{PREFIX}-{100 + 7 * i}", side="SELL" if i % 2 else "BUY"), T0 + 7 * S)
    return sim


def answers(sim: Sim, now: int = T0 + 8 * S) -> list:
    """What the venue says to a cancel of each early order (its instrument, another one), to its id used again,
    and to a cancel of an id never used that lies among the used ones."""
    out = []
    for cid in EARLY.values():
        out.append(sim.cancel(cid, now))
        out.append(sim.cancel(cid, now, iid="ETHUSDT.SIM"))
        out.append(sim.submit(order(cid), now))
    out.append(sim.cancel(f"{PREFIX}-101", now))
    out.append(sim.submit(order(f"{PREFIX}-101"), now))  # not a duplicate: accepted and filled
    out.append(sim.cancel(f"{PREFIX}-101", now))
    return out


def full_orders(sim: Sim) -> int:
    from projections.snapshot import unpack

    return len(unpack(sim.venue.snapshot()["orders"]))


def test_a_cancel_or_a_used_id_of_an_order_finished_long_ago_gets_the_answer_it_always_got():
    remembering = finished_history(3000, keep=10 ** 9)  # the venue as it was: every order kept whole
    venue = finished_history(3000)
    assert full_orders(remembering) == 3006 and full_orders(venue) <= 1101  # the early ones are archived
    expected = answers(remembering)
    assert answers(venue) == expected
    by_cid = {e[1]["client_order_id"]: e for a in expected[:6] for e in a}  # spelled out for the first two
    assert by_cid[EARLY["filled"]][1] == {"instrument_id": IID, "client_order_id": EARLY["filled"],
                                          "reason_code": "DUPLICATE_CLIENT_ORDER_ID",
                                          "reason": f"client order id {EARLY['filled']} was already used on SIM"}
    assert expected[0][0][1] == {"instrument_id": IID, "client_order_id": EARLY["filled"], "venue_order_id": "SIM-O1",
                                 "reason": "order already filled"}
    assert expected[1][0][1] == {"instrument_id": "ETHUSDT.SIM", "client_order_id": EARLY["filled"],
                                 "venue_order_id": "SIM-O1", "reason": "unknown order"}
    assert [a[0][1]["reason"] for a in expected[3:18:3]] == [
        "order already canceled", "order already rejected", "order already expired", "unknown order",
        "order already filled"]


def test_a_restored_venue_answers_for_archived_orders_as_the_one_that_never_stopped():
    venue = finished_history(3000)
    restored = Sim({"market_fill": "same_close", "volume_participation": "unlimited"})
    restored.venue.restore(venue.venue.snapshot())
    assert restored.venue.snapshot() == venue.venue.snapshot()
    assert answers(restored) == answers(finished_history(3000, keep=10 ** 9))


def test_an_expiry_of_an_archived_order_survives_a_snapshot():
    """A filled DAY order leaves an (inert) expiry behind; once the order is archived the snapshot carries it."""
    sim = finished_history(0, keep=0)
    sim.submit(order(f"{PREFIX}-20", tif="DAY"), T0 + 7 * S)  # filled at once; its expiry waits for midnight
    sim.submit(order(f"{PREFIX}-21", side="SELL"), T0 + 7 * S)
    timed = sim.venue.snapshot()["timed"]
    assert [(kind, ref[1]) for _, _, _, kind, ref in timed] == [("expire", f"{PREFIX}-20")]
    restored = Sim({"market_fill": "same_close", "volume_participation": "unlimited"})
    restored.venue.restore(sim.venue.snapshot())
    assert restored.venue.snapshot() == sim.venue.snapshot()
    day = 86_400 * S
    assert restored.feed(trade(T0 + day, "100")) == sim.feed(trade(T0 + day, "100")) == []


def test_a_snapshot_carries_a_bounded_tail_of_finished_orders_and_a_few_bytes_for_each_earlier_one():
    def size(x: Any) -> int:  # the text a snapshot's values hold
        if isinstance(x, str):
            return len(x.encode())
        if isinstance(x, dict):
            return sum(size(k) + size(v) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return sum(size(v) for v in x)
        return len(str(x))

    small, large = finished_history(1000), finished_history(5000)
    assert full_orders(small) <= 1101 and full_orders(large) <= 1101
    growth = size(large.venue.snapshot()) - size(small.venue.snapshot())
    assert growth < 8 * 4000  # under 8 bytes an order beyond the tail
    whole = size(finished_history(5000, keep=10 ** 9).venue.snapshot()) - size(small.venue.snapshot())
    assert whole > 100 * 4000  # every order kept whole: over 100 bytes each


@pytest.mark.parametrize("broken", ["forgets", "restores_without_archive"])
def test_a_venue_that_drops_what_the_answers_need_is_caught(broken, monkeypatch):
    """Negative control: an archive that forgets (or a restore that leaves it out) fails the comparison above."""
    from handlers.archive import OrderArchive

    expected = answers(finished_history(3000, keep=10 ** 9))
    if broken == "forgets":
        monkeypatch.setattr(OrderArchive, "add", lambda self, cid, *cells: None)
        assert answers(finished_history(3000)) != expected
    else:
        monkeypatch.setattr(OrderArchive, "restore", lambda self, state: None)
        restored = Sim({"market_fill": "same_close", "volume_participation": "unlimited"})
        restored.venue.restore(finished_history(3000).venue.snapshot())
        assert answers(restored) != expected


def test_nonsense_settings_are_refused_in_one_line():
    from handlers.venues.sim.config import VenueConfigError, parse_venue_config

    with pytest.raises(VenueConfigError, match=r"starting_balances.USDT = '-5' is negative"):
        parse_venue_config({"starting_balances": {"USDT": "-5"}})
    with pytest.raises(VenueConfigError, match="taker_fee = '-0.001' is negative .* allow_rebates = true"):
        parse_venue_config({"taker_fee": "-0.001"})
    rebate = parse_venue_config({"maker_fee": "-0.0001", "allow_rebates": True})
    assert rebate.maker_fee == D("-0.0001") and parse_venue_config(rebate.canonical()) == rebate  # recorded, parsed
    assert "allow_rebates" not in parse_venue_config({"maker_fee": "0.0001"}).canonical()  # old configs unchanged
