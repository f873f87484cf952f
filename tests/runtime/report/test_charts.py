"""The report's numbers: thinning keeps every extreme, the underwater curve, monthly returns on the UTC calendar, a
rolling Sharpe that is the run's own Sharpe over a full window, and buy-and-hold that ends where the benchmark does."""
from __future__ import annotations

import math
import random
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from projections.performance import EquityCurve, RoundTrips, statistics
from runtime.backtest.sweep import PointResult
from runtime.report.charts import POINTS, drawdown_line, monthly_returns, rolling_sharpe, sweep_heatmap, thinned
from runtime.report.timeline import Timeline


def ns(*ymd_hm: int) -> int:
    return int(datetime(*ymd_hm, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def test_thinning_keeps_first_last_and_every_buckets_extremes() -> None:
    rng = random.Random(5)
    values = [rng.gauss(0, 1) for _ in range(50_000)]
    values[31_337] = 99.0  # a spike a reader must see
    values[777] = -99.0
    ts = list(range(len(values)))
    t, v = thinned(ts, values)
    assert len(t) <= POINTS and t == sorted(set(t))
    assert (t[0], t[-1]) == (0, len(values) - 1) and max(v) == 99.0 and min(v) == -99.0
    assert all(values[i] == x for i, x in zip(t, v, strict=True))  # points of the line, not averages
    short = thinned(ts[:100], values[:100])
    assert short == (ts[:100], values[:100])


def test_the_underwater_curve_is_below_the_running_peak() -> None:
    assert drawdown_line([100, 110, 99, 121, 121, 60.5]) == pytest.approx([0, 0, -0.1, 0, 0, -0.5])


def test_monthly_returns_chain_month_end_to_month_end_in_utc() -> None:
    ts = [ns(2024, 1, 1), ns(2024, 1, 31, 23, 59), ns(2024, 2, 1), ns(2024, 2, 29, 23, 59), ns(2024, 4, 2)]
    eq = [100.0, 110.0, 99.0, 121.0, 60.5]
    got = monthly_returns(ts, eq)
    assert list(got) == [(2024, 1), (2024, 2), (2024, 4)]
    assert got[(2024, 1)] == pytest.approx(0.10) and got[(2024, 2)] == pytest.approx(0.10)
    assert got[(2024, 4)] == pytest.approx(-0.5)  # from February's last sample: March had none
    assert math.prod(1 + r for r in got.values()) == pytest.approx(eq[-1] / eq[0])


def test_a_full_window_rolling_sharpe_is_the_runs_sharpe() -> None:
    rng = random.Random(9)
    curve = EquityCurve()
    e = Decimal(1000)
    for i in range(400):
        e = (e * (1 + Decimal(str(round(rng.gauss(0.0005, 0.01), 6))))).quantize(Decimal("0.01"))
        curve.add(i * 60_000_000_000, e)
    values = [float(x) for _, x in curve.samples]
    for rate in (0.0, 0.04):
        stats = statistics(curve, RoundTrips(), periods_per_year=525_600, risk_free_rate=rate)
        rolling = rolling_sharpe(values, len(values) - 1, 525_600, rate)
        assert rolling[:-1] == [None] * (len(values) - 1)
        assert rolling[-1] == pytest.approx(stats["sharpe"], rel=1e-6)
    flat = rolling_sharpe([5.0] * 20, 5, 252)
    assert flat == [None] * 20  # no variation: no ratio, never a division by zero


class _Event:
    def __init__(self, iid: str, ts: int):
        self.name, self.ts_event, self.data = "Bar", ts, {"instrument_id": iid}


class _Market:
    def __init__(self) -> None:
        self.last_price: dict[str, Decimal] = {}


class _State:
    def __init__(self) -> None:
        self.market = _Market()


def test_buy_and_hold_growth_ends_at_the_equal_weight_return() -> None:
    tl, st = Timeline(), _State()
    marks = [("A", "100"), ("A", "110"), ("B", "50"), ("A", "121"), ("B", "40")]
    for ts, (iid, price) in enumerate(marks):
        st.market.last_price[iid] = Decimal(price)
        tl("source", _Event(iid, ts), st)  # type: ignore[arg-type]
        tl("sample", _Event(iid, ts), st)  # type: ignore[arg-type]
    g = tl.growth()
    # B is held flat until its first mark; at the end A is +21 %, B -20 %: the mean +0.5 %
    assert g.values == pytest.approx([1.0, 1.05, 1.05, 1.105, 1.005])
    assert tl.prices["A"].values == [100.0, 110.0, 121.0] and tl.prices["B"].ts == [2, 4]


def test_a_sweep_heatmap_cell_is_the_best_point_over_the_other_parameters() -> None:
    axes = [("fast", ["3", "5"]), ("slow", ["10", "20"]), ("q", ["1", "2"])]
    sharpe = {("3", "10", "1"): 0.5, ("3", "10", "2"): 1.5, ("5", "10", "1"): -1.0, ("5", "20", "2"): 2.0,
              ("3", "20", "1"): None}
    points = [PointResult({"fast": f, "slow": s, "q": q}, f"bt-{f}{s}{q}", "ran", {"sharpe": v, "max_drawdown": v})
              for (f, s, q), v in sharpe.items()]
    hm = sweep_heatmap(points, axes, ["fast", "slow"], "sharpe")
    assert hm is not None and hm.rows == ["slow=10", "slow=20"] and hm.columns == ["fast=3", "fast=5"]
    assert hm.values == [[1.5, -1.0], [None, 2.0]] and "best sharpe over q" in hm.note and "blank" in hm.note
    low = sweep_heatmap(points, axes, ["fast", "slow"], "max_drawdown")
    assert low is not None and low.values[0][0] == 0.5 and low.low_is_good  # the lowest drawdown is the best
    assert sweep_heatmap(points, axes, [], "sharpe") is None
