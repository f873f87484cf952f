"""Recovery time as a live-like log grows: latest snapshot + tail vs a full replay from seq 1.

Usage: python bench/recovery_time.py [--sizes 1e5,1e6,1e7] [--snapshot-every 50000] [--full-max 1e7]

A live-like namespace is what `tape live` writes: the engine records its own market inputs (an instrument and
one-minute bars, a seeded random walk) together with everything they cause — sma_cross intents, risk verdicts,
the queue, the simulated venue's orders and fills — and a SnapshotTaken every --snapshot-every events. The log
is grown once; when it reaches each size the committed log is recovered twice, while the writer keeps its lock:
  * restore(): the latest snapshot (found from the end of the system topic) + the tail after it;
  * the same fold from seq 1 ignoring snapshots (what recovery costs without them);
and the two states are checked equal. Group commit of 1000 steps and fsync=never while writing, for speed; it
does not change what recovery reads. Times are wall clock on a shared machine: expect noise of tens of percent.

The snapshot holds the whole state: open orders and the most recent finished ones (projections.orders forgets
older finished orders; the log keeps them all), so its size is bounded. The columns show both parts of a restore:
decoding the snapshot ('decode s') and folding the tail (at most --snapshot-every events; measured at multiples of
it, so the tail is the worst case), and 'snapshots/log' the share of the log's bytes that are snapshots.
"""
from __future__ import annotations

import argparse
import decimal
import random
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventstore.seek import last_event  # noqa: E402
from eventstore.store import Log  # noqa: E402
from handlers.queue import OutboundQueue, QueueConfig  # noqa: E402
from handlers.risk.engine import RiskEngine  # noqa: E402
from handlers.strategy import load_strategy, parse_params  # noqa: E402
from handlers.venues.sim.config import parse_venue_config  # noqa: E402
from handlers.venues.sim.venue import SimulatedVenue  # noqa: E402
from projections.snapshot import read_snapshot  # noqa: E402
from projections.state import State  # noqa: E402
from runtime.engine.loop import Engine  # noqa: E402
from runtime.replay.recovery import recover  # noqa: E402

IID = "BTCUSDT.BENCH"
T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000
NS = "live-bench"
INSTRUMENT = {
    "instrument_id": IID, "venue": "SIM", "symbol": "BTCUSDT", "kind": "SPOT", "base_currency": "BTC",
    "quote_currency": "USDT", "settlement_currency": "USDT", "price_increment": Decimal("0.01"),
    "size_increment": Decimal("0.00001"), "price_precision": 2, "size_precision": 5,
    "min_quantity": Decimal("0.00001"), "max_quantity": None, "min_notional": None,
    "maker_fee": Decimal("0.0002"), "taker_fee": Decimal("0.0005"), "multiplier": Decimal(1)}


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def measure(log: Log, size: int, full_max: int) -> dict:
    log = Log.open(log.url)  # a fresh reader, as a restarting process would have
    rec, t_snap = _timed(lambda: recover(log, NS))
    ev = last_event(log, NS, "SnapshotTaken")
    snap_bytes = len(ev.data["state"]) if ev else 0
    _, t_decode = _timed(lambda: read_snapshot(ev.data, log.catalog, log.registry(NS))) if ev else (None, 0.0)
    all_snaps = sum(len(r.value) for r in log.replay(NS, types=["SnapshotTaken"]).records())
    log_bytes = sum(p.bytes for p in log.partitions(NS))
    row = {"size": size, "events": rec.last_seq, "orders": len(rec.state.orders.by_id), "snap_seq": rec.snapshot_seq,
           "tail": rec.folded, "snap_bytes": snap_bytes, "t_snap": t_snap, "t_decode": t_decode, "t_full": None,
           "snap_share": all_snaps / log_bytes if log_bytes else 0.0}
    if size <= full_max:
        full, row["t_full"] = _timed(lambda: recover(log, NS, use_snapshots=False))
        assert full.state.snapshot() == rec.state.snapshot() and full.last_seq == rec.last_seq, "restore != full replay"
    log.close()
    return row


def run(sizes: list[int], snapshot_every: int, full_max: int, root: str) -> list[dict]:
    log = Log.open(f"file:{root}")
    rng = random.Random(7)
    cls = load_strategy("sma_cross")
    params = parse_params(cls, {"fast": "10", "slow": "40", "quantity": "0.5"})
    state = State()
    venue = SimulatedVenue(parse_venue_config({"starting_balances": {"USDT": "10000000"}}), state)
    writer = log.writer(NS, fsync="never")
    rows = []
    targets = sorted(sizes)
    t_write = time.perf_counter()
    with decimal.localcontext(prec=60), writer:
        engine = Engine(writer=writer, state=state, strategy_cls=cls, params=params, risk=RiskEngine(),
                        queue=OutboundQueue(QueueConfig(venue=venue.name)), venue=venue, strategy_id=cls.name,
                        record_inputs=True, group=1000, snapshot_every=snapshot_every)
        engine.process("InstrumentDefined", dict(INSTRUMENT), T0)
        engine.start(T0)
        px = 4_200_000
        k = 0
        while targets:
            k += 1
            px = max(100_000, px + rng.randint(-3000, 3000))
            close = Decimal(px).scaleb(-2)
            ts = T0 + k * MINUTE
            engine.process("Bar", {"instrument_id": IID, "timeframe": "1m", "open_ts": ts - MINUTE, "open": close,
                                   "high": close + 5, "low": close - 5, "close": close, "volume": Decimal(3),
                                   "trades": None}, ts)
            if engine.events >= targets[0]:
                engine.flush()
                size = targets.pop(0)
                written = time.perf_counter() - t_write
                row = measure(log, size, full_max)
                row["t_write"] = written
                rows.append(row)
                print_row(row, first=len(rows) == 1)
                t_write = time.perf_counter() - written  # exclude the measurement from the write time
    return rows


def print_row(r: dict, first: bool) -> None:
    if first:
        print(f"{'events':>11} {'orders':>8} {'snapshot':>9} {'tail':>7} {'snap MB':>8} {'decode s':>9} "
              f"{'restore s':>10} {'full replay s':>14} {'speed-up':>9} {'snapshots/log':>14}")
    full = f"{r['t_full']:.2f}" if r["t_full"] is not None else "skipped"
    speed = f"{r['t_full'] / r['t_snap']:.0f}x" if r["t_full"] else "-"
    print(f"{r['events']:>11,} {r['orders']:>8,} {r['snap_seq'] or '-':>9} {r['tail']:>7,} "
          f"{r['snap_bytes'] / 1e6:>8.2f} {r['t_decode']:>9.3f} {r['t_snap']:>10.3f} {full:>14} {speed:>9} "
          f"{r['snap_share']:>13.0%}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e5,1e6,1e7", help="Log sizes (events) at which to measure.")
    ap.add_argument("--snapshot-every", type=float, default=50_000)
    ap.add_argument("--full-max", type=float, default=1e7, help="Skip the full replay above this size.")
    ap.add_argument("--dir", default=None, help="Store directory (default: a temporary one, removed after).")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    root = args.dir or tempfile.mkdtemp(prefix="tape-recovery-bench-")
    print(f"live-like namespace (bars + sma_cross orders and fills recorded together), snapshot every "
          f"{int(args.snapshot_every):,} events; store {root}")
    t = time.perf_counter()
    try:
        run(sizes, int(args.snapshot_every), int(args.full_max), root)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"total {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
