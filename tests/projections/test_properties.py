"""Properties: folding is deterministic and resumable, and PnL, fees and equity stay consistent."""
from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import given, settings, strategies as st
from projkit import IID, D, account, fill, instrument, market, trade

from projections.performance import RoundTrips
from projections.portfolio import Portfolio

# Rounding of average prices to 18 places is the only inexact step: its error per fill is below
# 0.5e-18 × quantity, so the identities below hold to far better than this.
TOL = D("1e-12")

fills_st = st.lists(
    st.tuples(st.sampled_from(["BUY", "SELL"]),
              st.integers(1, 5000).map(lambda n: Decimal(n).scaleb(-3)),       # 0.001 … 5 in steps of 0.001
              st.integers(5000, 15000).map(lambda n: Decimal(n).scaleb(-2)),   # 50.00 … 150.00
              st.integers(0, 300).map(lambda n: Decimal(n).scaleb(-4))),       # fee 0 … 0.03
    min_size=1, max_size=30)
kind_st = st.sampled_from(["SPOT", "PERPETUAL"])
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


def events(rows):
    return [fill(f"o{i}", side, str(q), str(p), str(fee), trade_id=str(i)) for i, (side, q, p, fee) in enumerate(rows)]


@SETTINGS
@given(rows=fills_st, kind=kind_st, cut=st.integers(0, 30))
def test_fold_in_one_go_equals_fold_in_two_halves(rows, kind, cut):
    m = market(instrument(kind=kind))
    evs = events(rows)
    cut = min(cut, len(evs))
    whole = Portfolio(m)
    whole_rt = RoundTrips(m)
    for i, e in enumerate(evs):
        whole.apply("OrderFilled", e, i)
        whole_rt.apply("OrderFilled", e, i)
    first = Portfolio(m)
    first_rt = RoundTrips(m)
    for i, e in enumerate(evs[:cut]):
        first.apply("OrderFilled", e, i)
        first_rt.apply("OrderFilled", e, i)
    second = Portfolio.restore(m, first.snapshot())  # the state carried across the cut
    second_rt = copy.deepcopy(first_rt)
    for i, e in enumerate(evs[cut:], start=cut):
        second.apply("OrderFilled", e, i)
        second_rt.apply("OrderFilled", e, i)
    assert second.snapshot() == whole.snapshot()
    assert [t.as_dict() for t in second_rt.closed] == [t.as_dict() for t in whole_rt.closed]
    assert {k: t.as_dict() for k, t in second_rt.open.items()} == {k: t.as_dict() for k, t in whole_rt.open.items()}


@SETTINGS
@given(rows=fills_st, kind=kind_st, mark=st.integers(5000, 15000).map(lambda n: Decimal(n).scaleb(-2)),
       close=st.booleans())
def test_equity_change_is_realized_plus_unrealized_minus_fees(rows, kind, mark, close):
    m = market(instrument(kind=kind))
    p = Portfolio(m)
    rt = RoundTrips(m)
    p.apply("AccountState", account(USDT="10000"), 0)
    start = p.equity("USDT")
    evs = events(rows)
    if close:  # a closed sequence: a last fill brings the position back to 0
        q = sum((D(e["last_quantity"]) if e["side"] == "BUY" else -e["last_quantity"] for e in evs), D(0))
        if q:
            evs.append(fill("close", "SELL" if q > 0 else "BUY", str(abs(q)), str(mark), "0.01"))
    for i, e in enumerate(evs, start=1):
        p.apply("OrderFilled", e, i)
        rt.apply("OrderFilled", e, i)
    trade(m, str(mark))  # one constant mark for everything still open
    realized, unrealized, fees = p.realized_pnl(), p.unrealized_pnl(IID), p.fees_paid("USDT")
    assert abs((p.equity("USDT") - start) - (realized + unrealized - fees)) <= TOL
    assert fees == sum((e["fee"] for e in evs), D(0))
    if close:
        assert p.position_quantity(IID) == 0 and unrealized == 0 and rt.open == {}
        # round trips account for every fill: their net PnL is the portfolio's net realized PnL
        assert abs(sum((t.pnl for t in rt.closed), D(0)) - p.net_realized_pnl()) <= TOL
        assert abs(sum((t.gross_pnl for t in rt.closed), D(0)) - realized) <= TOL
        if kind == "SPOT":
            assert p.balances["BTC"] == 0
