"""Portfolio golden cases: netting, average price, realized/unrealized PnL, fees, balances, equity, marks."""
from __future__ import annotations

import pytest
from projkit import IID, D, account, fill, instrument, market, submitted, trade

from projections.orders import Orders
from projections.portfolio import MixedCurrencies, Portfolio, UnknownInstrument, UnmarkedCurrency

# The golden sequence (fees are 0.1% of notional, charged in USDT). Orders: A buy 1; B buy 1 (two partial
# fills); C sell 1.5; D sell 1.5 (two partial fills, the first flips the position); E buy 1 (closes the short).
FILLS = [
    ("A", "BUY", "1", "100", "0.1"),      # 1: notional 100
    ("B", "BUY", "0.25", "110", "0.0275"),  # 2: notional 27.5
    ("B", "BUY", "0.75", "110", "0.0825"),  # 3: notional 82.5
    ("C", "SELL", "1.5", "120", "0.18"),    # 4: notional 180
    ("D", "SELL", "1", "130", "0.13"),      # 5: notional 130 — closes 0.5 long, opens 0.5 short
    ("D", "SELL", "0.5", "128", "0.064"),   # 6: notional 64 — adds to the short
    ("E", "BUY", "1", "125", "0.125"),      # 7: notional 125 — closes the short
]
ORDER_QTY = {"A": "1", "B": "1", "C": "1.5", "D": "1.5", "E": "1"}

# After fill i, marked at that fill's price. Hand computation:
#  1: +1 @100, avg 100.                         realized 0.    fees 0.1
#  2: +0.25 @110 → 1.25, avg (100+27.5)/1.25 = 102.          fees 0.1275
#  3: +0.75 @110 → 2, avg (127.5+82.5)/2 = 105.               fees 0.21
#  4: −1.5 @120 → 0.5 @105, realized (120−105)×1.5 = 22.5.   fees 0.39
#  5: −1 @130: closes 0.5 → (130−105)×0.5 = 12.5 (realized 35); opens −0.5 @130.   fees 0.52
#  6: −0.5 @128 → −1, avg (0.5×130+0.5×128)/1 = 129.          fees 0.584
#  7: +1 @125 closes the short: (129−125)×1 = 4 → realized 39; flat, avg 0.      fees 0.709
# unrealized at the mark: 1: 0; 2: (110−102)×1.25 = 10; 3: (110−105)×2 = 10; 4: (120−105)×0.5 = 7.5;
#   5: (130−130)×−0.5 = 0; 6: (128−129)×−1 = 1; 7: 0.
# equity = 10000 + realized + unrealized − fees:
#   9999.9, 10009.8725, 10009.79, 10029.61, 10034.48, 10035.416, 10038.291
# SPOT balances: USDT −= signed qty × price + fee; BTC += signed qty:
#   USDT 10000 −100.1 = 9899.9; −27.5275 = 9872.3725; −82.5825 = 9789.79; +179.82 = 9969.61;
#        +129.87 = 10099.48; +63.936 = 10163.416; −125.125 = 10038.291
#   BTC  1, 1.25, 2, 0.5, −0.5, −1, 0
#   check 6: 10163.416 + (−1 × 128) = 10035.416 = equity ✓
# PERPETUAL balances: USDT += realized part − fee:
#   9999.9, 9999.8725, 9999.79, +22.5−0.18 → 10022.11, +12.5−0.13 → 10034.48, −0.064 → 10034.416,
#   +4−0.125 → 10038.291;   equity = USDT + unrealized, e.g. 6: 10034.416 + 1 = 10035.416 ✓
EXPECTED = [
    # qty,   avg,   realized, fees,     unreal, equity,      spot USDT,   spot BTC, perp USDT,   gross exposure
    ("1",    "100", "0",      "0.1",    "0",    "9999.9",    "9899.9",    "1",      "9999.9",    "100"),
    ("1.25", "102", "0",      "0.1275", "10",   "10009.8725", "9872.3725", "1.25",  "9999.8725", "137.5"),
    ("2",    "105", "0",      "0.21",   "10",   "10009.79",  "9789.79",   "2",      "9999.79",   "220"),
    ("0.5",  "105", "22.5",   "0.39",   "7.5",  "10029.61",  "9969.61",   "0.5",    "10022.11",  "60"),
    ("-0.5", "130", "35",     "0.52",   "0",    "10034.48",  "10099.48",  "-0.5",   "10034.48",  "65"),
    ("-1",   "129", "35",     "0.584",  "1",    "10035.416", "10163.416", "-1",     "10034.416", "128"),
    ("0",    "0",   "39",     "0.709",  "0",    "10038.291", "10038.291", "0",      "10038.291", "0"),
]


def run_golden(kind: str):
    m = market(instrument(kind=kind))
    p = Portfolio(m)
    orders = Orders()
    p.apply("AccountState", account(USDT="10000"), 0)
    submitted_ids: set[str] = set()
    for i, ((cid, side, qty, price, fee), exp) in enumerate(zip(FILLS, EXPECTED), start=1):
        if cid not in submitted_ids:
            orders.apply("OrderSubmitted", submitted(cid, side, ORDER_QTY[cid]), i)
            submitted_ids.add(cid)
        f = fill(cid, side, qty, price, fee, trade_id=str(i))
        orders.apply("OrderFilled", f, i)
        p.apply("OrderFilled", f, i)
        trade(m, price, ts=i)
        yield i, p, orders, exp


@pytest.mark.parametrize("kind", ["SPOT", "PERPETUAL"])
def test_golden_pnl_with_fees_and_partial_fills(kind: str):
    for i, p, orders, exp in run_golden(kind):
        qty, avg, realized, fees, unreal, equity, spot_usdt, spot_btc, perp_usdt, gross = map(D, exp)
        pos = p.positions[IID]
        assert pos.quantity == qty, i
        assert pos.avg_price == avg, i
        assert pos.realized_pnl == realized, i
        assert pos.fees == {"USDT": fees} and p.fees_paid() == fees == p.fees_paid("USDT"), i
        assert p.unrealized_pnl(IID) == unreal, i
        assert p.equity("USDT") == equity, i
        assert p.equity("USDT") == 10000 + realized + unreal - fees, i
        assert p.gross_exposure("USDT") == gross, i
        assert p.realized_pnl() == realized and p.net_realized_pnl() == realized - fees, i
        if kind == "SPOT":
            assert p.balances["USDT"] == spot_usdt and p.balances["BTC"] == spot_btc, i
        else:
            assert p.balances["USDT"] == perp_usdt and "BTC" not in p.balances, i
        if i == 5:  # D's first partial fill flipped the position
            d = orders.by_id["D"]
            assert d.status == "PARTIALLY_FILLED" and d.leaves_quantity == D("0.5") and d.avg_fill_price == 130
    # final: realized 39 gross, fees 0.709, net 38.291
    assert pos.net_realized_pnl == D("38.291")
    assert pos.fill_count == 7 and pos.traded_quantity == D(6)
    # traded notional 100 + 27.5 + 82.5 + 180 + 130 + 64 + 125 = 709
    assert pos.traded_notional == D(709)
    b, d = orders.by_id["B"], orders.by_id["D"]
    assert b.status == "FILLED" and b.avg_fill_price == 110 and b.fees == {"USDT": D("0.11")}
    # D: (130 × 1 + 128 × 0.5) / 1.5 = 194 / 1.5 = 129.3333…, fees 0.13 + 0.064
    assert d.status == "FILLED" and d.avg_fill_price == D("129.333333333333333333")
    assert d.fees == {"USDT": D("0.194")}
    assert all(o.status == "FILLED" for o in orders.by_id.values()) and orders.open() == []


def test_multiplier_scales_pnl_and_exposure():
    m = market(instrument(kind="FUTURE", multiplier="10"))
    p = Portfolio(m)
    p.apply("OrderFilled", fill("a", "BUY", "2", "100", "0.2"), 1)
    trade(m, "97")
    # unrealized (97 − 100) × 2 × 10 = −60; exposure 2 × 97 × 10 = 1940; equity −0.2 − 60
    assert p.unrealized_pnl(IID) == -60 and p.gross_exposure("USDT") == 1940
    assert p.equity("USDT") == D("-60.2")
    p.apply("OrderFilled", fill("b", "SELL", "2", "95", "0.19"), 2)
    # realized (95 − 100) × 2 × 10 = −100 settles into USDT; fees 0.39
    assert p.realized_pnl() == -100 and p.balances["USDT"] == D("-100.39")


def test_short_from_flat_and_cover():
    p = Portfolio(market(instrument(kind="PERPETUAL")))
    p.apply("OrderFilled", fill("a", "SELL", "2", "100"), 1)
    p.apply("OrderFilled", fill("b", "BUY", "0.5", "90"), 2)
    pos = p.positions[IID]
    # covered 0.5 of a short @100 at 90: +5; still −1.5 @100
    assert pos.realized_pnl == 5 and pos.quantity == D("-1.5") and pos.avg_price == 100
    assert p.unrealized_pnl(IID) == D("15")  # no market data yet: marked at the last fill, (90−100)×−1.5
    assert pos.ts_opened == 1


def test_fees_in_another_currency_are_kept_apart():
    m = market(instrument(), instrument("BNBUSDT.SIM", base="BNB"))
    p = Portfolio(m)
    p.apply("AccountState", account(USDT="1000", BNB="1"), 0)
    p.apply("OrderFilled", fill("a", "BUY", "1", "100", "0.01", fee_currency="BNB"), 1)
    p.apply("OrderFilled", fill("b", "SELL", "1", "110", "0.11"), 2)
    pos = p.positions[IID]
    assert pos.realized_pnl == 10 and pos.net_realized_pnl == D("9.89")  # only the USDT fee is in USDT
    assert p.balances["BNB"] == D("0.99") and p.balances["USDT"] == D("1009.89")
    with pytest.raises(MixedCurrencies, match="BNB"):
        p.fees_paid()
    assert p.fees_paid("BNB") == D("0.01") and p.fees_paid("USDT") == D("0.11")
    with pytest.raises(UnmarkedCurrency, match="currency BNB"):
        p.equity("USDT")  # BNB has an instrument but no price yet
    assert p.unmarked("USDT") == ["BNB"]
    trade(m, "300", iid="BNBUSDT.SIM")
    assert p.unmarked("USDT") == []
    assert p.equity("USDT") == D("1009.89") + D("0.99") * 300


def test_unmarked_currency_raises_zero_balance_ignored():
    m = market()
    p = Portfolio(m)
    p.apply("AccountState", account(USDT="100", ETH="0"), 0)
    assert p.equity("USDT") == 100
    p.apply("AccountState", account(ETH="2"), 1)
    with pytest.raises(UnmarkedCurrency, match="currency ETH.*USDT"):
        p.equity("USDT")
    m.apply("InstrumentDefined", instrument("ETHUSDT.SIM", base="ETH"), 2)  # a later definition is seen
    trade(m, "3000", iid="ETHUSDT.SIM")
    assert p.equity("USDT") == 6100


def test_equity_in_base_currency_uses_the_inverse_mark():
    m = market()
    p = Portfolio(m)
    p.apply("AccountState", account(USDT="1000", BTC="0.5"), 0)
    trade(m, "50000")
    assert p.equity("USDT") == 26000  # 1000 + 0.5 × 50000
    assert p.equity("BTC") == D("0.52")  # 0.5 + 1000 / 50000


def test_account_state_is_absolute_and_unreported_is_ignored():
    p = Portfolio(market())
    p.apply("AccountState", account(USDT="100"), 0)
    p.apply("OrderFilled", fill("a", "BUY", "0.1", "100", "0.01"), 1)
    assert p.balances == {"USDT": D("89.99"), "BTC": D("0.1")}
    derived = account(USDT="5")
    derived["reported"] = False
    p.apply("AccountState", derived, 2)
    assert p.balances["USDT"] == D("89.99")
    p.apply("AccountState", account(USDT="50"), 3)
    assert p.balances == {"USDT": D("50"), "BTC": D("0.1")}


def test_spot_fee_in_base_lowers_the_balance_not_the_position():
    p = Portfolio(market())
    p.apply("OrderFilled", fill("a", "BUY", "1", "100", "0.001", fee_currency="BTC"), 1)
    assert p.position_quantity(IID) == 1 and p.balances["BTC"] == D("0.999") and p.balances["USDT"] == -100


def test_fill_for_an_undefined_instrument_is_an_error():
    with pytest.raises(UnknownInstrument, match="NOPE.SIM"):
        Portfolio(market()).apply("OrderFilled", fill("a", "BUY", "1", "1", iid="NOPE.SIM"), 1)
    with pytest.raises(UnknownInstrument, match="OPTION"):
        Portfolio(market(instrument(kind="OPTION"))).apply("OrderFilled", fill("a", "BUY", "1", "1"), 1)


def test_mixed_pnl_currencies_need_a_currency():
    m = market(instrument(), instrument("ETHBTC.SIM", base="ETH", quote="BTC"))
    p = Portfolio(m)
    p.apply("OrderFilled", fill("a", "BUY", "1", "100"), 1)
    p.apply("OrderFilled", fill("b", "BUY", "1", "0.05", iid="ETHBTC.SIM", fee_currency="BTC"), 2)
    with pytest.raises(MixedCurrencies):
        p.realized_pnl()
    assert p.realized_pnl(currency="BTC") == 0 and p.position_quantity("NONE") == 0
    trade(m, "0.06", iid="ETHBTC.SIM")
    trade(m, "100")
    # ETH position: (0.06 − 0.05) × 1 = 0.01 BTC = 1 USDT at 100
    assert p.unrealized_pnl("ETHBTC.SIM") == D("0.01")
    assert p.unrealized_pnl(currency="USDT") == 1


def test_snapshot_restore_continues_identically():
    m = market()
    a = Portfolio(m)
    for i, (cid, side, qty, price, fee) in enumerate(FILLS[:4]):
        a.apply("OrderFilled", fill(cid, side, qty, price, fee), i)
    b = Portfolio.restore(m, a.snapshot())
    for i, (cid, side, qty, price, fee) in enumerate(FILLS[4:]):
        a.apply("OrderFilled", fill(cid, side, qty, price, fee), 10 + i)
        b.apply("OrderFilled", fill(cid, side, qty, price, fee), 10 + i)
    assert a.snapshot() == b.snapshot()
