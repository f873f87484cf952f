"""RiskState: trading state, order-rate window, unsent orders, and equity day start / peak (exact, cheap)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from projkit import IID, account, fill, instrument, submitted

from projections.risk import DAY_NS, RATE_MEMORY, RiskState
from projections.state import State

D = Decimal
DAY = 19_700  # a UTC day number
T0 = DAY * DAY_NS + 3_600 * 10**9  # 01:00 UTC
PERP = "BTCUSDT-PERP.SIM"


def tick(st: State, price: str, ts: int, iid: str = IID) -> None:
    st.apply("TradeTick", {"instrument_id": iid, "price": D(price), "size": D(1), "aggressor_side": "BUYER",
                           "trade_id": "x"}, ts)


def bar(st: State, close: str, ts: int, iid: str = IID) -> None:
    c = D(close)
    st.apply("Bar", {"instrument_id": iid, "open": c, "high": c, "low": c, "close": c, "volume": D(1)}, ts)


def filled(st: State, cid: str, side: str, qty: str, price: str, ts: int, iid: str = IID, fee: str = "0") -> None:
    st.apply("OrderSubmitted", submitted(cid, side, qty, iid=iid), ts)
    st.apply("OrderFilled", fill(cid, side, qty, price, fee=fee, iid=iid, trade_id=cid), ts)


def new_state(*defs, **balances: str) -> State:
    st = State()
    for d in defs or (instrument(),):
        st.apply("InstrumentDefined", d, T0)
    st.apply("AccountState", account(**(balances or {"USDT": "10000"})), T0)
    return st


def test_trading_state_starts_active_and_follows_changes():
    st = State()
    assert st.risk.trading_state == "ACTIVE"
    for state in ("REDUCING", "HALTED", "ACTIVE"):
        st.apply("TradingStateChanged", {"state": state, "previous": "x", "reason": "op", "incident_id": None}, T0)
        assert st.risk.trading_state == state
    st.apply("TradingStateChanged", {"state": "PAUSED", "previous": "ACTIVE", "reason": "?", "incident_id": None}, T0)
    assert st.risk.trading_state == "HALTED"  # unknown states fail safe


def test_order_times_record_accepts_in_event_time_and_are_bounded():
    st = State()
    for i in range(RATE_MEMORY + 5):
        st.apply("RiskAccepted", {"instrument_id": IID, "client_order_id": f"c{i}", "intent_id": f"n:{i}"}, T0 + i)
    times = st.risk.order_times
    assert len(times) == RATE_MEMORY
    assert times[0] == T0 + 5 and times[-1] == T0 + RATE_MEMORY + 4


def test_accepted_orders_are_pending_until_submitted_or_refused():
    st = State()
    r = st.risk
    for cid, side, qty in (("a", "BUY", "1"), ("b", "BUY", "2"), ("c", "SELL", "4"), ("d", "BUY", "8")):
        st.apply("OrderIntent", {"instrument_id": IID, "client_order_id": cid, "side": side, "quantity": D(qty)}, T0)
    st.apply("RiskRejected", {"instrument_id": IID, "client_order_id": "d", "intent_id": "n:4", "rule": "r",
                              "limit": "1", "value": "2", "reason": "x"}, T0)
    for cid in "abc":
        st.apply("RiskAccepted", {"instrument_id": IID, "client_order_id": cid, "intent_id": "n"}, T0)
    assert r.intents == {} and list(r.pending) == ["a", "b", "c"]
    assert r.pending_quantity(IID, "BUY") == 3
    assert r.pending_quantity(IID, "BUY", exclude="b") == 1
    assert r.pending_quantity("OTHER", "BUY") == 0
    st.apply("OrderSubmitted", submitted("a", "BUY", "1"), T0)
    st.apply("RiskRejected", {"instrument_id": IID, "client_order_id": "c", "intent_id": "n",
                              "rule": "canceled_in_queue", "limit": "HELD", "value": "CANCELED", "reason": "x"}, T0)
    assert list(r.pending) == ["b"]


def test_currency_is_the_first_instruments_settlement_currency():
    st = new_state(instrument(), instrument("ETHBTC.SIM", base="ETH", quote="BTC"))
    assert st.risk.currency == "USDT"
    assert st.risk.equity == D("10000") == st.risk.peak_equity


def test_spot_equity_follows_marks_incrementally_and_exactly():
    st = new_state(USDT="10000", BTC="0.5")
    r = st.risk
    tick(st, "100", T0 + 1)
    assert r.equity == D("10050")
    filled(st, "f1", "BUY", "10", "100", T0 + 2, fee="1")
    # USDT 10000 - 1000 - 1 fee = 8999; BTC 10.5 at 100
    assert r.equity == D("10049")
    assert r._sens == {IID: D("10.5")}  # d(equity)/d(mark): the BTC held, measured exactly
    for i, px in enumerate(("101", "99.5", "99.5", "120.25", "80.01")):
        bar(st, px, T0 + 10 + i)
        assert r.equity == st.portfolio.equity("USDT")
    assert r.equity == D("8999") + D("10.5") * D("80.01")
    assert r.peak_equity == D("8999") + D("10.5") * D("120.25")


def test_derivative_equity_is_open_pnl_and_flat_positions_stop_tracking():
    st = new_state(instrument(PERP, kind="PERPETUAL", multiplier="0.1"), USDT="1000")
    r = st.risk
    tick(st, "200", T0, PERP)
    filled(st, "p1", "SELL", "3", "200", T0 + 1, iid=PERP)
    assert r._sens == {PERP: D("-0.3")}
    for i, px in enumerate(("210", "190.5", "250")):
        tick(st, px, T0 + 2 + i, PERP)
        assert r.equity == st.portfolio.equity("USDT")
    assert r.equity == D("1000") - D("0.3") * 50
    filled(st, "p2", "BUY", "3", "250", T0 + 10, iid=PERP)
    assert r._sens == {}  # flat: no price event can move equity
    assert r.equity == D("985") == st.portfolio.equity("USDT")


def test_a_mark_used_inversely_triggers_a_full_recompute():
    # EUR converts to USDT through USDT/EUR (inverse): equity is not linear in that mark
    usdteur = instrument("USDTEUR.SIM", base="USDT", quote="EUR")
    st = new_state(instrument(), usdteur, USDT="100", EUR="90")
    tick(st, "0.9", T0 + 1, "USDTEUR.SIM")
    r = st.risk
    assert r._sens == {"USDTEUR.SIM": None}
    assert r.equity == D("200")
    for i, px in enumerate(("0.8", "0.75", "1.2")):
        tick(st, px, T0 + 2 + i, "USDTEUR.SIM")
        assert r.equity == st.portfolio.equity("USDT")
    assert r.equity == D("175")


def test_unconvertible_balance_leaves_equity_unknown_until_a_price_arrives():
    st = new_state(USDT="100", BTC="1")  # no BTC price yet
    r = st.risk
    assert r.equity is None and r.peak_equity is None
    tick(st, "50", T0 + 1)
    assert r.equity == D("150") == r.peak_equity


def test_prices_that_cannot_move_equity_never_compute_it(monkeypatch):
    st = new_state(instrument(), instrument("ETHUSDT.SIM", base="ETH"), USDT="1000", ETH="2")
    calls = []
    real = st.portfolio.equity
    monkeypatch.setattr(st.portfolio, "equity", lambda cur: calls.append(cur) or real(cur))
    for i in range(50):
        bar(st, str(100 + i), T0 + i)  # BTC: nothing held, no position
    assert calls == []
    tick(st, "10", T0 + 60, "ETHUSDT.SIM")  # first ETH price: full recompute, then incremental
    n = len(calls)
    assert n > 0 and st.risk.equity == D("1020")
    for i in range(5):
        tick(st, str(11 + i), T0 + 61 + i, "ETHUSDT.SIM")
    assert len(calls) == n and st.risk.equity == D("1030")


def test_day_start_equity_is_taken_at_the_first_event_of_each_utc_day():
    st = new_state(USDT="1000")
    r = st.risk
    filled(st, "f1", "BUY", "1", "100", T0 + 1)
    assert r.day == DAY and r.day_start_equity == D("1000")
    tick(st, "90", T0 + 2)
    assert r.day_start_equity == D("1000") and r.equity == D("990")
    midnight = (DAY + 1) * DAY_NS
    tick(st, "80", midnight - 1)
    assert r.day == DAY and r.day_start_equity == D("1000")
    tick(st, "85", midnight)  # first event of the new day: equity after it
    assert r.day == DAY + 1 and r.day_start_equity == D("985")
    tick(st, "70", midnight + 5)
    assert r.day_start_equity == D("985") and r.equity == D("970")
    assert r.peak_equity == D("1000")


def test_a_bar_for_a_flat_instrument_does_not_recompute_equity():
    """The hot path: marks that no balance or position depends on leave equity as it is, without a full recompute
    (speed itself is measured in bench/, not asserted here)."""
    st = new_state(USDT="1000")
    calls = []
    real = st.portfolio.equity
    st.portfolio.equity = lambda currency: calls.append(currency) or real(currency)
    data = {"instrument_id": IID, "open": D(1), "high": D(1), "low": D(1), "close": D(1), "volume": D(1)}
    for i in range(1000):
        st.risk.apply("Bar", {**data, "close": D(100 + i % 7)}, T0 + i)
    assert st.risk.equity == D(1000) and len(calls) <= 1


@pytest.mark.parametrize("event", ["Bar", "TradeTick", "QuoteTick"])
def test_price_events_are_folded(event):
    assert event in RiskState.EVENTS


def test_a_late_event_stamped_yesterday_does_not_reset_the_day():
    st = new_state(USDT="1000")
    r = st.risk
    filled(st, "f1", "BUY", "1", "100", T0 + 1)
    midnight = (DAY + 1) * DAY_NS
    tick(st, "90", midnight + 1)
    assert r.day == DAY + 1 and r.day_start_equity == D("990")
    filled(st, "f2", "BUY", "1", "90", midnight - 5)  # a venue report stamped before midnight
    tick(st, "80", midnight + 2)
    assert r.day == DAY + 1 and r.day_start_equity == D("990") and r.equity == D("970")
