"""tape's backtest against backtesting.py on the same seeded bars, the same sma_cross and the same fills.

Usage: python bench/hot_path.py [--bars 200000] [--reps 3] [--peer-python /tmp/peer/bin/python]
                                [--rss-sizes 200000,1000000,2000000] [--sweep-bars 100000] [--sweep-runs 8]

Every engine runs in a process of its own, interleaved (tape from its columns, tape from the log, backtesting.py,
then again), `--reps` times; figures are medians, each ratio is taken within a rep (this machine is noisy: the load
average is printed before and after). Then the same with signals only (the crossings computed, no orders), peak RSS
of a tape backtest at each of `--rss-sizes` bars, and a sweep of `--sweep-runs` parameter sets over one source with
1 and 2 worker processes (they share the source's columns file through the page cache).

Fills are the peers' model (bench/backtest_rate.py PEER_FILLS): tape then makes backtesting.py's round trips,
trade for trade, which the digest of their entry and exit prices shows. backtesting.py is not a tape dependency:
  python3 -m venv /tmp/peer && /tmp/peer/bin/pip install backtesting==0.6.6
Without it the peer columns are left out (said so), the rest runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from backtest_rate import PEER_FILLS, make_source

from eventstore.store import Log
from handlers.venues.sim.config import parse_venue_config
from runtime.backtest.runner import BacktestSpec, run_backtest


def spec(fast: int = 10, slow: int = 30, signals: bool = False) -> BacktestSpec:
    """sma_cross as the peers run it; signals only: its crossings computed, no order (bench/signals.py)."""
    return BacktestSpec(source="src", strategy=f"{HERE / 'signals.py'}:SmaSignals" if signals else "sma_cross",
                        params={"fast": str(fast), "slow": str(slow), "quantity": "1"},
                        venue=parse_venue_config({"starting_balances": {"USDT": "10000000"}, **PEER_FILLS}))


def trips_digest(result: Any) -> tuple[int, str]:
    closed = result.trips.closed
    text = ";".join(f"{t.entry_notional / t.quantity:.2f},{t.exit_notional / t.exit_quantity:.2f}" for t in closed)
    return len(closed), hashlib.sha256(text.encode()).hexdigest()[:16]


def child(store: str, signals: bool, cache: bool) -> None:
    """One backtest in this process: a JSON line of its figures."""
    log = Log.open(f"file:{store}")
    run_id = f"bench-{os.getpid()}"
    t, c = time.perf_counter(), time.process_time()
    r = run_backtest(log, spec(signals=signals), run_id=run_id, cache=cache)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    trips, digest = trips_digest(r)
    print(json.dumps({"engine": "tape" + ("" if cache else " (log)"), "bars": r.events_in, "seconds": seconds,
                      "cpu": cpu, "events": r.events_out, "round_trips": trips, "trips_digest": digest,
                      "read": r.cached.state, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    log.delete(run_id)


def run_child(args: list[str]) -> dict[str, Any]:
    p = subprocess.run(args, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def compare(store: str, bars: int, reps: int, peer: str | None, signals: bool) -> None:
    me = [sys.executable, __file__, "--child", store]
    engines = {"tape": me, "tape (log)": [*me, "--no-cache"]}
    if peer:
        engines["backtesting.py"] = [peer, str(HERE / "peers" / "backtesting_py.py"), "--bars", str(bars), "--json"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in engines}
    print(f"\n{'signals only' if signals else 'with orders'}: {bars:,} bars, {reps} interleaved reps, load {load()}")
    for _ in range(reps):
        for name, cmd in engines.items():
            runs[name].append(run_child([*cmd, "--signals"] if signals else cmd))
    print(f"  load after {load()}")
    print(f"  {'engine':16} {'bars/s (median)':>16}  {'reps':28} {'RSS MiB':>8} {'trips':>6}  digest            "
          "tape ÷ engine (median, per rep)")
    for name, rs in runs.items():
        rates = [bars / r["seconds"] for r in rs]
        ratio = ""
        if name != "tape":
            per = [(bars / t["seconds"]) / (bars / r["seconds"]) for t, r in zip(runs["tape"], rs)]
            ratio = f"{statistics.median(per):.2f} ({', '.join(f'{x:.2f}' for x in per)})"
        print(f"  {name:16} {statistics.median(rates):>16,.0f}  {' / '.join(f'{x:,.0f}' for x in rates):28} "
              f"{statistics.median(r['rss_mib'] for r in rs):>8.0f} {rs[0]['round_trips']:>6}  "
              f"{rs[0]['trips_digest']}  {ratio}")
    digests = {rs[0]["trips_digest"] for rs in runs.values()}
    print("  the same round trips in every engine" if len(digests) == 1 else "  ROUND TRIPS DIFFER between engines")


def rss(sizes: list[int]) -> None:
    print(f"\npeak RSS of one tape backtest (its own process, read from columns), load {load()}")
    for n in sizes:
        root = tempfile.mkdtemp(prefix="tape-hot-rss-")
        try:
            make_source(Log.open(f"file:{root}"), n)
            run_child([sys.executable, __file__, "--child", root])  # builds the columns
            r = run_child([sys.executable, __file__, "--child", root])
            print(f"  {n:>10,} bars  {r['rss_mib']:>7.0f} MiB  {n / r['seconds']:>9,.0f} bars/s")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _sweep_one(args: tuple[str, int, int]) -> int:
    store, fast, slow = args
    log = Log.open(f"file:{store}")
    run_id = f"sweep-{fast}-{slow}"
    r = run_backtest(log, spec(fast, slow), run_id=run_id)
    log.delete(run_id)
    return r.events_in


def sweep(store: str, runs: int) -> None:
    sets = [(store, 5 + i, 30 + 3 * i) for i in range(runs)]
    print(f"\nsweep: {runs} parameter sets (fast, slow) over one source, a fork pool, load {load()}")
    rates = {}
    for workers in (1, 2):
        t = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            total = sum(pool.map(_sweep_one, sets, chunksize=1))
        rates[workers] = total / (time.perf_counter() - t)
        print(f"  {workers} worker{'s' if workers > 1 else ' '}  {rates[workers]:>10,.0f} bars×runs/s")
    print(f"  2 ÷ 1: {rates[2] / rates[1]:.2f}  (load after {load()})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peer-python", default="/tmp/peer/bin/python")
    ap.add_argument("--rss-sizes", default="200000,1000000,2000000")
    ap.add_argument("--sweep-bars", type=int, default=100_000)
    ap.add_argument("--sweep-runs", type=int, default=8)
    ap.add_argument("--child", metavar="STORE", help=argparse.SUPPRESS)
    ap.add_argument("--signals", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-cache", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.signals, not args.no_cache)
        return
    peer = args.peer_python if Path(args.peer_python).exists() else None
    if peer is None:
        print(f"no peer at {args.peer_python}: backtesting.py is left out (see this script's docstring)")
    root = tempfile.mkdtemp(prefix="tape-hot-")
    try:
        make_source(Log.open(f"file:{root}"), args.bars)
        run_child([sys.executable, __file__, "--child", root])  # the columns, built once as a first run would
        compare(root, args.bars, args.reps, peer, signals=False)
        compare(root, args.bars, args.reps, peer, signals=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.rss_sizes:
        rss([int(x) for x in args.rss_sizes.split(",")])
    if args.sweep_runs:
        root = tempfile.mkdtemp(prefix="tape-hot-sweep-")
        try:
            make_source(Log.open(f"file:{root}"), args.sweep_bars)
            run_child([sys.executable, __file__, "--child", root])
            sweep(root, args.sweep_runs)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
