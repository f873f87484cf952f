"""Round trips and run statistics on small hand-computed cases, and their edge cases."""
from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal

import pytest
from projkit import IID, D, fill, instrument, market
from test_portfolio import FILLS

from projections.performance import (
    YEAR_NS,
    Annualisation,
    BuyAndHold,
    CurveOrderError,
    EquityCurve,
    RoundTrip,
    RoundTrips,
    drawdowns,
    infer_periods_per_year,
    max_drawdown,
    sample_calendar,
    statistics,
)
from schemas.errors import TapeError

DAY = 24 * 3600 * 10**9


def curve(values, exposed=None, step=DAY) -> EquityCurve:
    c = EquityCurve()
    for i, v in enumerate(values):
        c.add(i * step, D(str(v)), bool(exposed[i]) if exposed else False)
    return c


def trip(pnl: str, side: str = "LONG") -> RoundTrip:
    # entry 1 @100; exit 1 @(100 + pnl) for a long → gross = pnl, no fees
    return RoundTrip(IID, side, "USDT", 0, 1, quantity=D(1), exit_quantity=D(1), entry_notional=D(100),
                     exit_notional=D(100) + D(pnl))


def golden_trips() -> RoundTrips:
    rt = RoundTrips(market())
    for i, (cid, side, qty, price, fee) in enumerate(FILLS, start=1):
        rt.apply("OrderFilled", fill(cid, side, qty, price, fee), i)
    return rt


def test_round_trips_of_the_golden_sequence():
    rt = golden_trips()
    assert rt.open == {} and len(rt.closed) == 2
    long, short = rt.closed
    # LONG: entries 1@100, 0.25@110, 0.75@110 → qty 2, notional 210, avg 105;
    #       exits 1.5@120 (180) and 0.5@130 (65, the closing half of D's first fill) → 245, avg 122.5; gross 35.
    #       fees: 0.1 + 0.0275 + 0.0825 + 0.18 + half of 0.13 (0.065) = 0.455 → pnl 34.545
    assert (long.side, long.entry_ts, long.exit_ts) == ("LONG", 1, 5)
    assert long.quantity == 2 and long.avg_entry == 105 and long.avg_exit == D("122.5")
    assert long.gross_pnl == 35 and long.fees == D("0.455") and long.pnl == D("34.545") and long.fills == 5
    # SHORT: entries 0.5@130 (rest of D's first fill), 0.5@128 → qty 1, avg 129; exit 1@125; gross (129−125)×1 = 4
    #        fees: 0.065 + 0.064 + 0.125 = 0.254 → pnl 3.746
    assert (short.side, short.entry_ts, short.exit_ts) == ("SHORT", 5, 7)
    assert short.quantity == 1 and short.avg_entry == 129 and short.avg_exit == 125
    assert short.gross_pnl == 4 and short.fees == D("0.254") and short.pnl == D("3.746") and short.fills == 3
    # the trips add up to the portfolio's net realized PnL: 34.545 + 3.746 = 38.291 = 39 − 0.709
    assert long.pnl + short.pnl == D("38.291")
    assert short.as_dict()["pnl"] == D("3.746")


def test_round_trip_flip_fee_split_is_exact_and_other_currency_fees_kept_apart():
    rt = RoundTrips(market(instrument(kind="PERPETUAL", multiplier="2")))
    rt.apply("OrderFilled", fill("a", "BUY", "1", "100", "0.01", fee_currency="BNB"), 1)
    rt.apply("OrderFilled", fill("b", "SELL", "3", "90", "1"), 2)  # closes 1, opens 2 short: fee 1/3 vs 2/3
    closed, = rt.closed
    opened = rt.open[IID]
    assert closed.fees == D("0.333333333333333333") and opened.fees == D("0.666666666666666667")
    assert closed.fees + opened.fees == 1 and closed.other_fees == {"BNB": D("0.01")}
    assert closed.gross_pnl == -20  # (90 − 100) × 1 × multiplier 2
    assert opened.side == "SHORT" and opened.quantity == 2 and opened.exit_ts is None


def test_statistics_drawdown_duration_exposure_total_return():
    # 100 → 120 (peak) → 90 (trough: 30/120 = 0.25) → 95 → 130 (recovered at sample 4) → 110 (20/130 ≈ 0.154)
    c = curve([100, 120, 90, 95, 130, 110], exposed=[0, 1, 1, 0, 1, 0])
    s = statistics(c, [], [])
    assert s["start_equity"] == 100 and s["end_equity"] == 110
    assert s["total_return"] == pytest.approx(0.1)
    assert s["max_drawdown"] == pytest.approx(0.25)
    assert s["max_drawdown_duration_samples"] == 3 and s["max_drawdown_duration_ns"] == 3 * DAY
    assert s["max_drawdown_recovered"] is True
    assert s["periods_per_year"] == pytest.approx(365.0)  # daily samples
    assert s["exposure_time"] == 0.5  # 3 of 6 samples in the market
    assert s["round_trips"] == 0 and s["win_rate"] is None and s["profit_factor"] is None
    assert s["fills"] == 0 and s["fees_paid"] == 0 and s["turnover"] == 0.0


def test_statistics_sharpe_sortino_on_a_known_series():
    # returns +10%, −10%, +10%: mean 1/30; sample std sqrt(((1/15)² × 2 + (2/15)²) / 2) = √3/15
    # Sharpe per period (1/30)/(√3/15) = 1/(2√3); × √4 (4 periods a year) = 1/√3
    # downside deviation sqrt(0.1² / 3) = 0.1/√3 → Sortino (1/30)/(0.1/√3) × 2 = 2/√3
    c = curve(["100", "110", "99", "108.9"])
    s = statistics(c, [], [], periods_per_year=4)
    assert s["sharpe"] == pytest.approx(1 / math.sqrt(3), rel=1e-12)
    assert s["sortino"] == pytest.approx(2 / math.sqrt(3), rel=1e-12)
    # 3 periods = 0.75 years, growth 1.089 → 1.089^(4/3) − 1 ≈ 0.12039
    assert s["annualized_return"] == pytest.approx(1.089 ** (4 / 3) - 1)
    assert s["annualized_return"] == pytest.approx(0.12039, abs=1e-5)
    # drawdown 110 → 99 = 10%, never recovered: from sample 1 to the last sample 3
    assert s["max_drawdown"] == pytest.approx(0.1)
    assert s["max_drawdown_duration_samples"] == 2 and s["max_drawdown_recovered"] is False


def test_statistics_trades_win_rate_profit_factor_averages():
    trips = [trip("10"), trip("-5"), trip("20"), trip("0"), trip("-15")]
    s = statistics(curve([100, 100]), trips, [])
    # wins 10, 20; losses −5, −15; the break-even trip counts in the denominator only
    assert s["round_trips"] == 5 and s["win_rate"] == pytest.approx(0.4)
    assert s["profit_factor"] == pytest.approx(30 / 20)
    assert s["average_win"] == 15 and s["average_loss"] == -10
    assert s["trips_pnl"] == 10


def test_statistics_turnover_fees_and_fills_of_the_golden_run():
    fills = [fill(cid, side, qty, price, fee) for cid, side, qty, price, fee in FILLS]
    s = statistics(curve([1000, 1000]), golden_trips(), fills)
    # traded notional 100 + 27.5 + 82.5 + 180 + 130 + 64 + 125 = 709; average equity 1000
    assert s["traded_notional"] == 709 and s["turnover"] == pytest.approx(0.709)
    assert s["fees_paid"] == D("0.709") and s["fills"] == 7 and s["round_trips"] == 2
    assert s["win_rate"] == 1.0 and s["profit_factor"] is None  # no losing trip: undefined, not inf
    assert s["average_win"] == D("19.1455")  # (34.545 + 3.746) / 2
    assert s["average_loss"] is None


def test_statistics_fees_in_several_currencies():
    fills = [fill("a", "BUY", "1", "100", "0.1"), fill("b", "SELL", "1", "100", "0.01", fee_currency="BNB")]
    s = statistics(curve([100]), [], fills)
    assert s["fees_paid"] is None and s["fees_by_currency"] == {"USDT": D("0.1"), "BNB": D("0.01")}
    assert statistics(curve([100]), [], fills, currency="USDT")["fees_paid"] == D("0.1")


@pytest.mark.parametrize("values", [[], [100], [100, 100, 100], [0, 0], [100, 0, 0]])
def test_statistics_edge_cases_never_inf_or_nan(values):
    s = statistics(curve(values), [], [])
    for k, v in s.items():
        if isinstance(v, float):
            assert math.isfinite(v), k
    if len(values) < 2 or values[0] == values[-1] == 100:
        assert s["sharpe"] is None and s["sortino"] is None
    if values == [100, 100, 100]:
        assert s["total_return"] == 0.0 and s["max_drawdown"] == 0.0 and s["annualized_return"] == 0.0
    if values == [100, 0, 0]:
        assert s["max_drawdown"] == 1.0 and s["total_return"] == -1.0 and s["annualized_return"] == -1.0
    if not values:
        assert s["start_equity"] is None and s["exposure_time"] is None and s["turnover"] is None


def test_annualized_return_overflow_is_none():
    c = curve([1, 10**6], step=1)  # a millionfold in one nanosecond
    assert statistics(c, [], [])["annualized_return"] is None


def test_curve_order_and_same_instant_replacement():
    c = EquityCurve()
    c.add(10, D(1))
    c.add(10, D(2), True)
    assert c.samples == [(10, D(2))] and c.in_market == [True]
    with pytest.raises(CurveOrderError, match="older"):
        c.add(9, D(1))


def test_infer_periods_per_year_uses_median_spacing():
    minute = 60 * 10**9
    samples = [(t, D(1)) for t in (0, minute, 2 * minute, 3 * minute, 10 * minute)]
    assert infer_periods_per_year(samples) == YEAR_NS / minute == 525600
    assert infer_periods_per_year(samples[:1]) is None
    assert max_drawdown([]) == (0.0, 0, 0, True)


def test_curve_records_a_portfolio():
    from projkit import account

    from projections.portfolio import Portfolio
    m = market()
    p = Portfolio(m)
    p.apply("AccountState", account(USDT="100"), 0)
    c = EquityCurve()
    c.record(p, "USDT", 1)
    p.apply("OrderFilled", fill("a", "BUY", "1", "10"), 2)
    c.record(p, "USDT", 2)
    assert c.samples == [(1, D(100)), (2, D(100))] and c.in_market == [False, True]


def test_statistics_from_the_round_trip_fold_alone():
    # fills=None (or the engine's State) → fill count, notional and fees from the fold, which saw every fill
    rt = golden_trips()
    fills = [fill(cid, side, qty, price, fee) for cid, side, qty, price, fee in FILLS]
    c = curve([1000, 1000])
    by_fold, by_fills = statistics(c, rt, None), statistics(c, rt, fills)
    assert by_fold == by_fills
    assert by_fold["fills"] == 7 and by_fold["traded_notional"] == 709 and by_fold["fees_paid"] == D("0.709")
    assert rt.trips is rt.closed
    with pytest.raises(TypeError):
        statistics(c, rt.closed, None)


# ---- annualisation from the data's calendar ----------------------------------------------------------------

HOLIDAYS = ((1, 1), (1, 15), (2, 19), (3, 29), (5, 27), (7, 4), (9, 2), (11, 28), (12, 25))


def exchange_days(first: date, last: date) -> list[date]:
    """Weekdays less nine holidays a year (each on the first weekday from its date): an exchange's trading days."""
    closed = set()
    for year in range(first.year, last.year + 1):
        for month, day in HOLIDAYS:
            d = date(year, month, day)
            while d.weekday() >= 5:
                d += timedelta(days=1)
            closed.add(d)
    out, d = [], first
    while d <= last:
        if d.weekday() < 5 and d not in closed:
            out.append(d)
        d += timedelta(days=1)
    return out


def day_ns(d: date) -> int:
    return (d - date(1970, 1, 1)).days * DAY


def test_daily_bars_of_an_exchange_are_annualised_with_its_trading_days():
    days = exchange_days(date(2022, 1, 3), date(2023, 12, 29))
    growth = [100 * 1.0004 ** i for i in range(len(days))]
    c = EquityCurve()
    for d, v in zip(days, growth, strict=True):
        c.add(day_ns(d) + DAY, D(f"{v:.8f}"))  # a daily bar's event time is its close: the next midnight
    s = statistics(c, [], [])
    # by hand: 2022 and 2023 have 260 weekdays each, less 9 holidays: 502 closes, each on a UTC day of its own,
    # from 4 January 2022 (the 3rd is New Year's Day observed) to 29 December 2023 — 501 after the first in 724 days
    assert len(days) == 502 and (days[-1] - days[0]).days == 724
    ppy = 365 * 501 / 724
    assert s["periods_per_year"] == pytest.approx(ppy, rel=1e-12) and 252 < ppy < 254  # not 365
    assert s["trading_days_per_year"] == pytest.approx(ppy) and s["samples_per_trading_day"] == 1
    assert "trading days a year" in s["periods_per_year_basis"]
    end, start = float(D(f"{growth[-1]:.8f}")), 100.0
    assert s["annualized_return"] == pytest.approx((end / start) ** (ppy / (len(days) - 1)) - 1, rel=1e-12)
    assert s["annualized_return"] == pytest.approx(1.0004 ** ppy - 1, rel=1e-6)  # ≈ 10.6 %, not 1.0004^365 − 1


def test_a_24_7_minute_market_has_525600_periods_a_year():
    minute = 60 * 10**9
    c = EquityCurve()
    for i in range(1, 3 * 1440 + 400):  # closes from 00:01 on day 0 to part way through day 3
        c.add(i * minute, D(100 + i % 7))
    s = statistics(c, [], [])
    assert s["periods_per_year"] == 525600 and s["samples_per_trading_day"] == 1440
    assert s["trading_days_per_year"] == 365
    assert "1,440 samples a trading day" in s["periods_per_year_basis"]


def test_an_exchanges_minute_bars_count_their_session_not_the_clock():
    minute = 60 * 10**9
    c = EquityCurve()
    for d in exchange_days(date(2024, 3, 4), date(2024, 3, 29)):
        for m in range(390):  # 14:31 … 21:00 UTC
            c.add(day_ns(d) + (14 * 60 + 31 + m) * minute, D(100 + m % 5))
    cal = sample_calendar(c.samples)
    assert cal is not None and cal.samples_per_day == 390
    assert cal.periods_per_year == pytest.approx(365 * 18 / 24 * 390)  # 19 sessions, 4 to 28 March


def test_less_than_a_whole_day_is_annualised_by_the_bar_spacing():
    c = curve([100, 101, 102], step=60 * 10**9)
    s = statistics(c, [], [])
    assert s["periods_per_year"] == 525600 and s["samples_per_trading_day"] is None
    assert s["periods_per_year_basis"].startswith("inferred from the bar spacing")


def test_periods_per_year_given_override_the_calendar_and_say_so():
    c = curve([100, 110, 99, 108.9])  # daily: the calendar says 365
    s = statistics(c, [], [], periods_per_year=D(252))
    assert s["periods_per_year"] == 252 and s["periods_per_year_basis"] == "given"
    assert s["annualized_return"] == pytest.approx(1.089 ** (252 / 3) - 1)


def test_the_risk_free_rate_is_taken_off_each_period_before_sharpe_and_sortino():
    # returns +10 %, −10 %, +10 % at 4 periods a year; a 21.550625 % annual rate is 5 % a period (1.05⁴)
    # excess: +5 %, −15 %, +5 %: mean −5/300 = −1/60; sample std as before √3/15 (a shift changes no deviation)
    # Sharpe (−1/60)/(√3/15) × 2 = −1/(2√3); downside sqrt(0.15² / 3) → Sortino (−1/60)/(0.15/√3) × 2 = −2√3/9
    c = curve(["100", "110", "99", "108.9"])
    s = statistics(c, [], [], periods_per_year=4, risk_free_rate=D("0.21550625"))
    assert s["risk_free_rate"] == pytest.approx(0.21550625)
    assert s["sharpe"] == pytest.approx(-1 / (2 * math.sqrt(3)), rel=1e-9)
    assert s["sortino"] == pytest.approx(-2 * math.sqrt(3) / 9, rel=1e-9)
    assert statistics(c, [], [], periods_per_year=4)["risk_free_rate"] == 0.0


def test_annualisation_settings_record_only_what_was_given():
    assert Annualisation().canonical() == {}
    given = Annualisation.parse({"periods_per_year": "252", "risk_free_rate": "0.04"})
    assert given == Annualisation(D(252), D("0.04")) and Annualisation.parse(given.canonical()) == given
    for bad, what in (({"periods_per_year": "0"}, "> 0"), ({"periods_per_year": "x"}, "number"),
                      ({"risk_free_rate": "-1"}, "> -1"), ({"periods": 1}, "unknown key")):
        with pytest.raises(TapeError, match=what):
            Annualisation.parse(bad)


def test_the_drawdown_curve_and_the_buy_and_hold_benchmark():
    c = curve([100, 120, 90, 95, 130, 110])
    assert drawdowns(c.samples) == pytest.approx([0, 0, 0.25, 25 / 120, 0, 20 / 130])
    assert max(drawdowns(c.samples)) == max_drawdown(c.samples)[0]
    bh = BuyAndHold()
    bh.observe({}, 0)
    bh.observe({"A": D(50)}, 1)
    bh.observe({"A": D(55), "B": D(10)}, 2)  # A's start stays its first mark
    r = bh.report({"A": D(60), "B": D(8)}, periods=4, periods_per_year=4)
    assert r["instruments"]["A"]["first_price"] == 50 and r["instruments"]["A"]["first_ts"] == 1
    assert r["instruments"]["A"]["return"] == pytest.approx(0.2)
    assert r["instruments"]["B"]["return"] == pytest.approx(-0.2)
    assert r["return"] == pytest.approx(0.0) and r["annualized_return"] == pytest.approx(0.0)


def _max_drawdown_every_division(samples):
    """The reference: every sample's fall under its peak divided out (the rule before it divided only new lows)."""
    from decimal import localcontext

    from projections.performance import _CTX

    best, best_peak_i, best_trough_i, peak, peak_i = Decimal(0), 0, 0, None, 0
    with localcontext(_CTX):
        for i, (_, e) in enumerate(samples):
            if peak is None or e > peak:
                peak, peak_i = e, i
            elif peak > 0 and (peak - e) / peak > best:
                best, best_peak_i, best_trough_i = (peak - e) / peak, peak_i, i
    return best, best_peak_i, best_trough_i


@pytest.mark.parametrize("seed", range(40))
def test_max_drawdown_divides_only_new_lows_and_gives_the_same_answer(seed):
    import random

    rng = random.Random(seed)
    e, samples = Decimal(rng.choice([1, 3, 7])) / 3, []  # non-terminating quotients: rounding is exercised
    for i in range(rng.randint(1, 300)):
        e = max(Decimal(0), e + Decimal(rng.randint(-30, 30)) / 97)
        samples.append((i * DAY, rng.choice([e, e, samples[-1][1] if samples else e])))
    best, peak_i, trough_i = _max_drawdown_every_division(samples)
    fraction, ns, n, recovered = max_drawdown(samples)
    assert fraction == float(best)
    if best:
        end = next((j for j in range(trough_i + 1, len(samples)) if samples[j][1] >= samples[peak_i][1]), None)
        assert recovered is (end is not None)
        end = len(samples) - 1 if end is None else end
        assert (ns, n) == (samples[end][0] - samples[peak_i][0], end - peak_i)
