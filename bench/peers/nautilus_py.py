"""The same sma_cross over the same seeded bars in NautilusTrader, for a same-run comparison with bench/backtest_rate.py.

Runs in its own environment (NautilusTrader is not a tape dependency), beside bench/peers/backtesting_py.py:
  python3 -m venv /tmp/peer && /tmp/peer/bin/pip install backtesting==0.6.6 nautilus_trader==1.221.0
  /tmp/peer/bin/python bench/peers/nautilus_py.py --bars 200000
The bars are those of backtesting_py.py (the seeded random walk of bench/backtest_rate.py); the strategy buys 1 on a
fast-over-slow SMA cross and closes on the cross back, market orders on bar execution, 0.05 % taker fee.
"""
from __future__ import annotations

import argparse
import logging
import time
from decimal import Decimal

from backtesting_py import bars
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.indicators import SimpleMovingAverage
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId, Venue
from nautilus_trader.model.objects import Money
from nautilus_trader.persistence.wranglers import BarDataWrangler
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy


class SmaCrossConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    trade_size: Decimal = Decimal("1")
    fast: int = 10
    slow: int = 30


class SmaCross(Strategy):
    def __init__(self, config: SmaCrossConfig) -> None:
        super().__init__(config)
        self.fast = SimpleMovingAverage(config.fast)
        self.slow = SimpleMovingAverage(config.slow)
        self.above: bool | None = None
        self.trades = 0

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.config.instrument_id)
        self.register_indicator_for_bars(self.config.bar_type, self.fast)
        self.register_indicator_for_bars(self.config.bar_type, self.slow)
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        if not self.slow.initialized:
            return
        above = self.fast.value > self.slow.value
        if self.above is not None and above != self.above:
            flat = self.portfolio.is_flat(self.config.instrument_id)
            if above and flat:
                qty = self.instrument.make_qty(self.config.trade_size)
                self.submit_order(self.order_factory.market(self.config.instrument_id, OrderSide.BUY, qty))
            elif not above and not flat:
                self.close_all_positions(self.config.instrument_id)
                self.trades += 1
        self.above = above


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=200_000)
    n = ap.parse_args().bars
    logging.disable(logging.CRITICAL)
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR", bypass_logging=True)))
    venue = Venue("BINANCE")
    engine.add_venue(venue=venue, oms_type=OmsType.NETTING, account_type=AccountType.CASH, base_currency=None,
                     starting_balances=[Money(10_000_000, USDT)])
    instrument = TestInstrumentProvider.btcusdt_binance()
    engine.add_instrument(instrument)
    bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-LAST-EXTERNAL")
    df = bars(n).rename(columns=str.lower)
    engine.add_data(BarDataWrangler(bar_type, instrument).process(df))
    strategy = SmaCross(SmaCrossConfig(instrument_id=instrument.id, bar_type=bar_type))
    engine.add_strategy(strategy)
    t = time.perf_counter()
    engine.run()
    s = time.perf_counter() - t
    print(f"NautilusTrader sma_cross: {n / s:,.0f} bars/s ({n:,} bars, {strategy.trades} trades, {s:.1f} s)")
    engine.dispose()


if __name__ == "__main__":
    main()
