"""The replay: units from a store namespace, stepping, pacing by speed, --loop laps, candles and instruments."""
from decimal import Decimal as D

import pytest
from sandboxkit import MINUTE_NS, T0_NS, bar_prices, write_history

from eventstore.store import Log
from runtime.sandbox.config import SandboxError
from runtime.sandbox.market import Market, VenueClock, interval_ms, load_instruments


@pytest.fixture
def log(tmp_path):
    write_history(tmp_path / "store", "hist", bars=12)
    log = Log.open(f"file:{tmp_path / 'store'}")
    yield log
    log.close()


def test_instruments_come_from_the_namespace(log):
    (inst,) = load_instruments(log, "hist").values()
    assert (inst.symbol, inst.base, inst.quote, inst.tick, inst.step, inst.min_notional, inst.maker_fee,
            inst.taker_fee) == ("BTCUSDT", "BTC", "USDT", D("0.01"), D("0.00001"), D(10), D("0.001"), D("0.002"))


def test_unknown_namespace_and_no_instruments_are_one_line(log):
    with pytest.raises(SandboxError) as e:
        load_instruments(log, "nope")
    assert "'nope' is not in store" in str(e.value) and "hist" in str(e.value) and "tape ingest csv" in str(e.value)
    from eventstore.writer import Draft

    with log.writer("bare") as w:
        w.append([Draft("Bar", {"instrument_id": "X.SIM", "timeframe": "1m", "open_ts": T0_NS, "open": D(1),
                                "high": D(1), "low": D(1), "close": D(1), "volume": D(1)}, T0_NS + MINUTE_NS, "X.SIM")])
    with pytest.raises(SandboxError) as e:
        load_instruments(log, "bare")
    assert "defines no spot instrument" in str(e.value) and "\n" not in str(e.value)


def test_step_releases_bars_with_their_path_prints_and_candles(log):
    clock = VenueClock(0)
    m = Market(log, "hist", load_instruments(log, "hist"), clock)
    assert clock.market_ns() == T0_NS  # before any step: the first bar's open
    units = m.step(2)
    prices = bar_prices(2)
    assert [u.time_ms for u in units] == [(T0_NS + MINUTE_NS) // 10**6, (T0_NS + 2 * MINUTE_NS) // 10**6]
    o, h, lo, c = prices[0]
    assert units[0].path == ((o, lo, h, c) if c >= o else (o, h, lo, c)) and units[0].kind == "bar"
    assert [p.trade_id for u in units for p in u.prints] == list(range(1, 9))
    assert all(p.qty == D(1) for p in units[0].prints)  # a quarter of the bar's volume of 4
    assert clock.market_ms() == units[-1].time_ms and m.released == 2
    sym = m.symbols["BTCUSDT"]
    assert sym.last_price == prices[1][3] and sym.update_id == 3
    m.step(1)
    (k3,) = sym.candles(interval_ms("3m"))  # three 1m bars merged into one 3m kline
    assert (k3.open, k3.close, k3.volume, k3.closed) == (prices[0][0], sym.last_price, D(12), True)
    assert k3.high == max(p[1] for p in bar_prices(3)) and k3.trades == 12


def test_paced_clock_releases_what_is_due_and_loop_keeps_time_going(log):
    now = [0.0]
    clock = VenueClock(60.0, monotonic=lambda: now[0])  # one market minute per wall second
    m = Market(log, "hist", load_instruments(log, "hist"), clock, loop=True)
    assert m.due() == []
    now[0] = 2.5
    assert len(m.due()) == 2  # bars closing at +1 min and +2 min
    now[0] = 30.0
    units = m.due()
    assert m.laps >= 1 and units[-1].time_ms > (T0_NS + 12 * MINUTE_NS) // 10**6  # lap 2 continues after lap 1
    times = [u.time_ms for u in units]
    assert times == sorted(times)


def test_interval_names():
    assert interval_ms("1m") == 60_000 and interval_ms("1d") == 86_400_000
    with pytest.raises(ValueError):
        interval_ms("1M")
