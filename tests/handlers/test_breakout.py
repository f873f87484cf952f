"""The breakout built-in over two instruments: enters on a channel break, protects every position with a resting
stop-market order that trails the channel's low, leaves by that stop, each instrument on its own; its state
snapshots and restores."""
from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

from eventstore.store import Log
from eventstore.writer import Draft
from handlers.venues.sim.config import parse_venue_config
from projections.snapshot import read_snapshot
from runtime.backtest.runner import BacktestSpec, run_backtest

T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000
IIDS = ("BTCUSDT.SIM", "ETHUSDT.SIM")


def waves(log: Log, n: int = 1200) -> None:
    """Each instrument a slow wave (trends up and down: breakouts, then stops), its own period."""
    w = log.writer("src", fsync="never")
    for iid in IIDS:
        w.append([Draft("InstrumentDefined", {
            "instrument_id": iid, "venue": "SIM", "symbol": iid[:7], "kind": "SPOT", "base_currency": iid[:3],
            "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": Decimal("0.01"),
            "size_increment": Decimal("0.001"), "price_precision": 2, "size_precision": 3,
            "min_quantity": Decimal("0.001"), "max_quantity": None, "min_notional": None,
            "maker_fee": Decimal("0.0002"), "taker_fee": Decimal("0.0005"), "multiplier": Decimal(1)},
            T0, iid, "test")])
    steps = []
    for i in range(n):
        for k, iid in enumerate(IIDS):
            mid = 1000 * (k + 1) * (1 + 0.1 * math.sin(i / (40 + 25 * k))) + (i % 7)
            o, c = Decimal(f"{mid:.2f}"), Decimal(f"{mid + 1.5 * math.sin(i):.2f}")
            steps.append((Draft("Bar", {"instrument_id": iid, "timeframe": "1m", "open_ts": T0 + i * MINUTE,
                                        "open": o, "high": max(o, c) + 2, "low": min(o, c) - 2, "close": c,
                                        "volume": Decimal(50), "trades": None}, T0 + (i + 1) * MINUTE, iid,
                                 "test"),))
    w.append_steps(steps)
    w.close()


def test_breakout_enters_on_breaks_and_leaves_by_its_trailing_stops(tmp_path: Path) -> None:
    log = Log.open(f"file:{tmp_path}")
    waves(log)
    spec = BacktestSpec(source="src", strategy="breakout", params={"entry": "30", "exit": "15", "quantity": "0.5"},
                        venue=parse_venue_config({"starting_balances": {"USDT": "100000"}}), snapshot_every=3000)
    r = run_backtest(log, spec)
    events = list(log.replay(r.run_id))
    submitted = [e.data for e in events if e.name == "OrderSubmitted"]
    stops = [o for o in submitted if o["order_type"] == "STOP_MARKET"]
    assert {o["instrument_id"] for o in stops} == set(IIDS)
    assert all(o["side"] == "SELL" and o["reduce_only"] for o in stops)
    triggered = {e.data["client_order_id"] for e in events if e.name == "OrderTriggered"}
    exits = [e.data for e in events if e.name == "OrderFilled" and e.data["client_order_id"] in triggered]
    assert exits and {f["instrument_id"] for f in exits} == set(IIDS)  # left by its stops, on both
    assert any(e.name == "OrderCanceled" for e in events)  # stops trailed up: canceled, placed higher
    for iid in IIDS:  # a stop is only ever raised while a position stays open
        trail = [o["trigger_price"] for o in stops if o["instrument_id"] == iid]
        assert len(trail) > len([f for f in exits if f["instrument_id"] == iid])
    assert r.statistics["round_trips"] >= 2 and not any(e.name == "RiskRejected" for e in events)
    # never short, never more than one entry's quantity
    assert all(p.quantity in (Decimal(0), Decimal("0.5")) for p in r.state.portfolio.positions.values())

    snaps = [e for e in events if e.name == "SnapshotTaken"]
    snap = read_snapshot(snaps[-1].data, log.catalog, log.registry(r.run_id))
    from handlers.strategies.breakout import Breakout
    from handlers.strategy import parse_params

    fresh = Breakout(parse_params(Breakout, {"entry": "30", "exit": "15"}), None)
    fresh.restore(snap.strategy_state)
    assert fresh.snapshot() == snap.strategy_state and set(fresh.channels) == set(IIDS)
