"""Startup is recovery: replaying a live namespace's inputs through a fresh engine rebuilds exactly the state the
killed session had — positions, orders, balances, and the strategy's, queue's and paper venue's own state."""
from __future__ import annotations

import random

import pytest

from eventstore.store import Log
from runtime.live.node import LiveNode, LiveSpec
from runtime.live.resume import RecoveryDiverged

MIN_MS = 60_000
T0_MS = 1_700_000_040_000


class MarketStub:
    """Just enough of a ccxt exchange for paper mode: one spot market and a seeded random walk of 1m bars."""

    def __init__(self, seed: int = 3, bars: int = 400) -> None:
        rng = random.Random(seed)
        px, self.rows = 100.0, []
        for i in range(bars):
            o = px
            px = round(max(1.0, px + rng.choice((-1, 1)) * rng.randint(0, 150) / 100), 2)
            self.rows.append([T0_MS + i * MIN_MS, o, max(o, px) + 0.1, min(o, px) - 0.1, px, 5.0])
        self.now_ms = T0_MS + 30 * MIN_MS
        self.options: dict = {}
        self.markets = {"BTC/USDT": {"id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT",
                                     "spot": True, "precision": {"price": 0.01, "amount": 0.001},
                                     "limits": {"amount": {"min": 0.001}, "cost": {"min": 5.0}},
                                     "maker": 0.001, "taker": 0.001}}

    def load_markets(self):
        return self.markets

    def fetch_ohlcv(self, symbol, timeframe, since, limit):
        return [r for r in self.rows if r[0] >= since and r[0] + MIN_MS <= self.now_ms][:limit]


def spec(**kw) -> LiveSpec:
    base = dict(namespace="live-t", venue="binance", symbols=("BTC/USDT",), strategy="sma_cross",
                params={"fast": "3", "slow": "8", "quantity": "0.5"}, paper=True, history_bars=20, poll_seconds=0,
                snapshot_every=50)
    base.update(kw)
    return LiveSpec(**base)


def node(store, market: MarketStub, **kw) -> LiveNode:
    return LiveNode(Log.open(f"file:{store}"), spec(**kw), market, clock=lambda: market.now_ms * 1_000_000)


def run_minutes(n: LiveNode, market: MarketStub, minutes: int) -> None:
    for _ in range(minutes):
        market.now_ms += MIN_MS
        n.step()


def test_a_killed_paper_session_recovers_exactly(tmp_path):
    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    run_minutes(a, market, 150)
    assert a.engine.state.portfolio.fill_count > 5  # it traded
    crashed = a.engine.state.snapshot()
    strategy = a.engine.strategy.snapshot()
    a.writer.close()  # killed: no RunStopped, nothing else written
    b = node(tmp_path, market)
    assert b.engine.state.snapshot() == crashed and b.engine.strategy.snapshot() == strategy
    assert b.session.recovered_inputs > 150
    # the resumed session goes on as one uninterrupted run would
    b.start()
    run_minutes(b, market, 100)
    b.engine.stop({"run_id": "live-t", "reason": "test"})
    b.writer.close()
    c = node(tmp_path, market)  # and a second recovery of the whole log agrees with it
    assert c.engine.state.snapshot() == b.engine.state.snapshot()
    c.writer.close()


def test_resuming_with_other_parameters_is_refused(tmp_path):
    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    run_minutes(a, market, 5)
    a.writer.close()
    from runtime.live.node import LiveError

    with pytest.raises(LiveError, match="resume it with the same ones"):
        node(tmp_path, market, params={"fast": "4", "slow": "8", "quantity": "0.5"})


def test_a_log_the_engine_does_not_derive_is_named(tmp_path, monkeypatch):
    """Negative control for the replay check: a strategy that now decides differently is caught at recovery."""
    from handlers.strategies.sma_cross import SmaCross

    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    run_minutes(a, market, 80)
    assert a.engine.state.portfolio.fill_count > 0
    a.writer.close()
    real = SmaCross.on_bar

    def twice(self, bar):
        real(self, bar)
        real(self, bar)

    monkeypatch.setattr(SmaCross, "on_bar", twice)
    with pytest.raises(RecoveryDiverged, match="replaying its inputs derived"):
        node(tmp_path, market)


def test_a_second_session_on_the_namespace_is_refused(tmp_path):
    from eventstore.errors import LockedNamespace

    market = MarketStub()
    a = node(tmp_path, market)
    a.start()
    with pytest.raises(LockedNamespace):
        node(tmp_path, market)
    a.engine.stop({"run_id": "live-t", "reason": "test"})
    a.writer.close()
    b = node(tmp_path, market)  # once the first has stopped, the namespace resumes
    assert b.session.recovered_events > 0
    b.writer.close()
