"""The same sma_cross over the same seeded bars in backtrader, for a same-run comparison with bench/backtest_rate.py.

Runs in its own environment (backtrader is not a tape dependency), beside bench/peers/backtesting_py.py:
  python3 -m venv /tmp/peer && /tmp/peer/bin/pip install backtesting==0.6.6 backtrader
  /tmp/peer/bin/python bench/peers/backtrader_py.py --bars 200000
The bars are those of backtesting_py.py (the seeded random walk of bench/backtest_rate.py).
"""
from __future__ import annotations

import argparse
import time

import backtrader as bt
from backtesting_py import bars


class SmaCross(bt.Strategy):
    params = (("fast", 10), ("slow", 30))

    def __init__(self) -> None:
        fast = bt.indicators.SMA(self.data.close, period=self.p.fast)
        slow = bt.indicators.SMA(self.data.close, period=self.p.slow)
        self.cross = bt.indicators.CrossOver(fast, slow)
        self.trades = 0

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self.trades += 1

    def next(self) -> None:
        if self.cross > 0 and not self.position:
            self.buy(size=1)
        elif self.cross < 0 and self.position:
            self.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=200_000)
    n = ap.parse_args().bars
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=bars(n)))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(10_000_000)
    cerebro.broker.setcommission(commission=0.0005)
    t = time.perf_counter()
    strategy = cerebro.run()[0]
    s = time.perf_counter() - t
    print(f"backtrader sma_cross: {n / s:,.0f} bars/s ({n:,} bars, {strategy.trades} trades, {s:.1f} s)")


if __name__ == "__main__":
    main()
