"""sma_cross over N generated one-minute bars (seeded): the whole pipeline, every event logged.

Usage: python bench/backtest_rate.py [--bars N] [--profile]
Prints bars/s and events/s of the backtest, and the source replay rate alone (read + decode) measured in the same
run as a baseline, since this machine is noisy. --profile prints where the time goes.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import shutil
import tempfile
import time
from decimal import Decimal

from eventstore.store import Log
from eventstore.writer import Draft
from handlers.venues.sim.config import parse_venue_config
from runtime.backtest.runner import BacktestSpec, run_backtest

IID = "BTCUSDT.BENCH"
T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000
# the peers' fill model (bench/peers/): a market order fills whole at the next bar's open — with it tape makes the
# peers' trades, trade for trade, so the rates compare like with like
PEER_FILLS = {"market_fill": "next_open", "volume_participation": "unlimited"}


def make_source(log: Log, n: int, seed: int = 11) -> None:
    """A random walk of n one-minute bars with an instrument definition, written as the source namespace."""
    rng = random.Random(seed)
    w = log.writer("src", fsync="never")
    w.append([Draft("InstrumentDefined", {
        "instrument_id": IID, "venue": "BENCH", "symbol": "BTCUSDT", "kind": "SPOT", "base_currency": "BTC",
        "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": Decimal("0.01"),
        "size_increment": Decimal("0.00001"), "price_precision": 2, "size_precision": 5,
        "min_quantity": Decimal("0.00001"), "max_quantity": None, "min_notional": None,
        "maker_fee": Decimal("0.0002"), "taker_fee": Decimal("0.0005"), "multiplier": Decimal(1)}, T0, IID, "bench")])
    price = 4_200_000
    steps = []
    for i in range(n):
        o = price
        c = o + rng.randint(-3000, 3000)
        h = max(o, c) + rng.randint(0, 1500)
        lo = min(o, c) - rng.randint(0, 1500)
        price = c
        steps.append((Draft("Bar", {"instrument_id": IID, "timeframe": "1m", "open_ts": T0 + i * MINUTE,
                                    "open": Decimal(o).scaleb(-2), "high": Decimal(h).scaleb(-2),
                                    "low": Decimal(lo).scaleb(-2), "close": Decimal(c).scaleb(-2),
                                    "volume": Decimal(rng.randint(1, 500000)).scaleb(-4), "trades": None},
                             T0 + (i + 1) * MINUTE, IID, "bench"),))
        if len(steps) == 5000:
            w.append_steps(steps)
            steps = []
    if steps:
        w.append_steps(steps)
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="tape-bt-bench-")
    try:
        log = Log.open(f"file:{root}")
        t = time.perf_counter()
        make_source(log, args.bars)
        print(f"source: {args.bars:,} bars written in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        n = sum(1 for e in log.replay("src", types=["Bar"]) if e.data)
        replay_s = time.perf_counter() - t
        spec = BacktestSpec(source="src", strategy="sma_cross", params={"fast": "10", "slow": "30", "quantity": "1"},
                            venue=parse_venue_config({"starting_balances": {"USDT": "10000000"}, **PEER_FILLS}))
        prof = cProfile.Profile() if args.profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        r = run_backtest(log, spec, run_id="bt-bench")
        if prof:
            prof.disable()
        bt_s = time.perf_counter() - t
        print(f"replay of the source alone (read+decode): {n / replay_s:>10,.0f} bars/s")
        print(f"backtest sma_cross, every event logged:    {n / bt_s:>10,.0f} bars/s  "
              f"({r.events_out:,} events written, {(n + r.events_out) / bt_s:,.0f} events/s processed)")
        print(f"backtest time / source replay time:         {bt_s / replay_s:>10.2f}x")
        print(f"fills {r.statistics['fills']}, round trips {r.statistics['round_trips']}")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(45)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
