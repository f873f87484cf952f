"""The pairs built-in on two instruments whose spread reverts: each entry is one leg bought and the other sold,
each exit closes both; nothing refused; its state snapshots and restores; nonsense parameters refused."""
from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from eventstore.store import Log
from eventstore.writer import Draft
from handlers.strategies.pairs import Pairs
from handlers.strategy import parse_params
from handlers.venues.sim.config import parse_venue_config
from projections.snapshot import read_snapshot
from runtime.backtest.runner import BacktestSpec, run_backtest
from schemas.errors import TapeError

T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000
A, B = "BTCUSDT.SIM", "ETHUSDT.SIM"


def cointegrated(log: Log, n: int = 1500, seed: int = 4) -> None:
    """a: a random walk; b: a / 20 times a mean-reverting wobble — a spread that strays and comes back."""
    rng = random.Random(seed)
    w = log.writer("src", fsync="never")
    for iid in (A, B):
        w.append([Draft("InstrumentDefined", {
            "instrument_id": iid, "venue": "SIM", "symbol": iid[:7], "kind": "SPOT", "base_currency": iid[:3],
            "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": Decimal("0.01"),
            "size_increment": Decimal("0.001"), "price_precision": 2, "size_precision": 3,
            "min_quantity": Decimal("0.001"), "max_quantity": None, "min_notional": None,
            "maker_fee": Decimal(0), "taker_fee": Decimal("0.0002"), "multiplier": Decimal(1)}, T0, iid, "test")])
    price, wobble, steps = 40_000.0, 0.0, []
    for i in range(n):
        price += rng.gauss(0, 20)
        wobble = 0.97 * wobble + rng.gauss(0, 0.002)
        for iid, px in ((A, price), (B, price / 20 * (1 + wobble))):
            c = Decimal(f"{px:.2f}")
            steps.append((Draft("Bar", {"instrument_id": iid, "timeframe": "1m", "open_ts": T0 + i * MINUTE,
                                        "open": c, "high": c, "low": c, "close": c, "volume": Decimal(1000),
                                        "trades": None}, T0 + (i + 1) * MINUTE, iid, "test"),))
    w.append_steps(steps)
    w.close()


def test_pairs_trades_both_legs_against_each_other_and_closes_them_together(tmp_path: Path) -> None:
    log = Log.open(f"file:{tmp_path}")
    cointegrated(log)
    params = {"a": A, "b": B, "window": "60", "entry": "2", "exit": "0.5", "quantity": "0.5"}
    spec = BacktestSpec(source="src", strategy="pairs", params=params, snapshot_every=2500,
                        venue=parse_venue_config({"starting_balances": {"USDT": "1000000"}, "account_type": "margin",
                                                  "market_fill": "same_close"}))
    r = run_backtest(log, spec)
    events = list(log.replay(r.run_id))
    assert not [e for e in events if e.name in ("RiskRejected", "OrderRejected")]
    intents = [e.data for e in events if e.name == "OrderIntent"]
    entries = [(x, y) for x, y in zip(intents, intents[1:]) if not x["reduce_only"] and not y["reduce_only"]
               and (x["instrument_id"], y["instrument_id"]) == (A, B)]
    assert len(entries) >= 3 and all(x["side"] != y["side"] for x, y in entries)  # one bought, the other sold
    assert {x["side"] for x, _ in entries} == {"BUY", "SELL"}  # both directions of the spread
    exits = [i for i in intents if i["reduce_only"]]
    assert {i["instrument_id"] for i in exits} == {A, B}
    per = {t.instrument_id for t in r.trips.closed}
    assert per == {A, B} and r.statistics["round_trips"] >= 6
    snap = read_snapshot([e for e in events if e.name == "SnapshotTaken"][-1].data, log.catalog,
                         log.registry(r.run_id))
    fresh = Pairs(parse_params(Pairs, params), None)
    fresh.restore(snap.strategy_state)
    assert fresh.snapshot() == snap.strategy_state


@pytest.mark.parametrize("raw", [{"a": A}, {"a": A, "b": A}, {"a": A, "b": B, "window": "1"},
                                 {"a": A, "b": B, "exit": "3"}, {"a": A, "b": B, "quantity": "0"}])
def test_pairs_refuses_parameters_it_cannot_trade(raw: dict[str, str]) -> None:
    with pytest.raises(TapeError, match="pairs: "):
        Pairs(parse_params(Pairs, raw), None)
