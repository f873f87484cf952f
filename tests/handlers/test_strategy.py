"""The strategy API: loading by name or module:Class, typed parameters, timers and intents through the engine."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from eventstore.errors import TapeError
from eventstore.store import Log
from eventstore.writer import Draft
from handlers.strategies.sma_cross import SmaCross
from handlers.strategy import Strategy, load_strategy, params_as_strings, parse_params
from handlers.venues.sim.config import parse_venue_config
from runtime.backtest.runner import BacktestSpec, run_backtest

IID = "ETHUSDT.SIM"
T0 = 1_700_000_000_000_000_000
MIN = 60_000_000_000


class TimerStrategy(Strategy):
    """Buys with a stop-limit on the first bar, cancels it from a timer two minutes later."""

    name = "timer_test"

    @dataclass(frozen=True)
    class Params:
        quantity: Decimal = Decimal("1")
        delay_min: int = 2

    def on_start(self) -> None:
        self.cid = None
        self.fired: list[int] = []

    def on_bar(self, bar):
        if self.cid is None:
            self.cid = self.buy(IID, self.params.quantity, order_type="STOP_LIMIT", trigger_price=Decimal("500"),
                                price=Decimal("501"), time_in_force="GTC")
            self.ctx.set_timer("cancel", self.ctx.now + self.params.delay_min * MIN)

    def on_timer(self, name, ts):
        self.fired.append(ts)
        self.ctx.cancel(IID, self.cid, "timer")


def _source(tmp_path: Path) -> Log:
    log = Log.open(f"file:{tmp_path / 'store'}")
    with log.writer("src") as w:
        w.append([Draft("InstrumentDefined", {
            "instrument_id": IID, "venue": "SIM", "symbol": "ETHUSDT", "kind": "SPOT", "base_currency": "ETH",
            "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": Decimal("0.01"),
            "size_increment": Decimal("0.001"), "price_precision": 2, "size_precision": 3,
            "min_quantity": Decimal("0.001"), "max_quantity": None, "min_notional": None,
            "maker_fee": Decimal(0), "taker_fee": Decimal(0), "multiplier": Decimal(1)}, T0, IID, "test")])
        for i in range(6):
            p = Decimal(100 + i)
            w.append([Draft("Bar", {"instrument_id": IID, "timeframe": "1m", "open_ts": T0 + i * MIN, "open": p,
                                    "high": p + 1, "low": p - 1, "close": p, "volume": Decimal(10), "trades": None},
                            T0 + (i + 1) * MIN, IID, "test")])
    return log


def test_builtin_and_module_class_loading() -> None:
    assert load_strategy("sma_cross") is SmaCross
    assert load_strategy("tests.handlers.test_strategy:TimerStrategy").name == "timer_test"
    with pytest.raises(TapeError, match="unknown strategy"):
        load_strategy("nope")
    with pytest.raises(TapeError, match="cannot load"):
        load_strategy("no.such.module:X")
    with pytest.raises(TapeError, match="not a tape Strategy"):
        load_strategy("decimal:Decimal")


def test_params_are_typed_and_recorded_exactly() -> None:
    p = parse_params(SmaCross, {"fast": "3", "quantity": "0.25", "long_only": "false"})
    assert p.fast == 3 and p.quantity == Decimal("0.25") and p.long_only is False
    assert params_as_strings(p) == {"fast": "3", "slow": "30", "quantity": "0.25", "long_only": "False",
                                    "instrument": ""}
    with pytest.raises(TapeError, match="unknown parameter 'fats'"):
        parse_params(SmaCross, {"fats": "3"})
    with pytest.raises(TapeError, match="fast='x' is not a valid int"):
        parse_params(SmaCross, {"fast": "x"})


def test_timer_cancels_a_stop_limit_order_in_event_time(tmp_path: Path) -> None:
    log = _source(tmp_path)
    spec = BacktestSpec(source="src", strategy="tests.handlers.test_strategy:TimerStrategy",
                        venue=parse_venue_config({"starting_balances": {"USDT": "10000"}}))
    run_backtest(log, spec, run_id="bt-t")
    events = [(e.name, e.ts_event, e.data) for e in log.replay("bt-t")]
    names = [n for n, _, _ in events]
    assert names.index("OrderIntent") < names.index("OrderSubmitted") < names.index("Timer")
    intent = next(d for n, _, d in events if n == "OrderIntent")
    assert intent["order_type"] == "STOP_LIMIT" and intent["trigger_price"] == Decimal("500")
    timer = next((ts, d) for n, ts, d in events if n == "Timer")
    # first bar closes at T0+1min; the timer was set for two minutes later and fires at the input that passes it
    assert timer[1]["scheduled_ts"] == T0 + 3 * MIN and timer[0] == T0 + 3 * MIN
    canceled = [d for n, _, d in events if n == "OrderCanceled"]
    assert [c["client_order_id"] for c in canceled] == [intent["client_order_id"]]
    assert "OrderFilled" not in names


def test_built_in_strategies_refuse_a_quantity_that_cannot_trade() -> None:
    import pytest

    from handlers.strategies.breakout import Breakout
    from handlers.strategies.market_maker import MarketMaker
    from schemas.errors import TapeError

    for cls, raw in ((SmaCross, {"quantity": "0"}), (SmaCross, {"quantity": "-1"}), (Breakout, {"quantity": "0"}),
                     (MarketMaker, {"quantity": "-0.1"}), (MarketMaker, {"spread": "0"})):
        with pytest.raises(TapeError, match="> 0"):
            cls(parse_params(cls, raw), None)
