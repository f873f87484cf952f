"""Append and replay rates of the file log against bare fastavro encode/decode of the same records.

Usage: python bench/log_throughput.py [--events N] [--step-group K] [--dir PATH]
Prints figures; the ratios compare runs made in the same process, which is what counts on a noisy machine.
"""
from __future__ import annotations

import argparse
import gc
import random
import shutil
import tempfile
import time
from decimal import Decimal
from io import BytesIO

from fastavro import schemaless_reader, schemaless_writer

from eventstore.catalog import Catalog
from eventstore.store import Log
from eventstore.writer import Draft

INSTRUMENT = "BTCUSDT.BINANCE"
T0 = 1_700_000_000_000_000_000


def ticks(n: int, seed: int = 7) -> list[dict]:
    """Seeded random-walk trade ticks, payload fields only."""
    rng = random.Random(seed)
    price = 50_000_00
    out = []
    for i in range(n):
        price += rng.randint(-50, 50)
        out.append({
            "instrument_id": INSTRUMENT,
            "price": Decimal(price).scaleb(-2),
            "quantity": Decimal(rng.randint(1, 100_000)).scaleb(-5),
            "aggressor_side": "BUYER" if rng.random() < 0.5 else "SELLER",
            "trade_id": str(1_000_000 + i),
        })
    return out


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--step-group", type=int, default=1000, help="steps committed together (group commit)")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    n = args.events
    catalog = Catalog.load()
    et = catalog.get("TradeTick")
    payloads = ticks(n)
    records = []
    prev = b"\x00" * 32
    for i, p in enumerate(payloads):
        r = dict(p)
        r["envelope"] = {"event_id": f"bench:{i + 1}", "seq": i + 1, "ts_event": T0 + i * 1000, "ts_init": T0 + i * 1000,
                         "causation_id": None, "correlation_id": None, "source": "bench", "prev_hash": prev}
        records.append(r)
    parsed = et.parsed

    encoded: list[bytes] = []

    def bare_encode() -> None:
        encoded.clear()
        for r in records:
            b = BytesIO()
            schemaless_writer(b, parsed, r)
            encoded.append(b.getvalue())

    def bare_decode() -> None:
        for v in encoded:
            schemaless_reader(BytesIO(v), parsed, None)

    # the generated data is long-lived: keep the cyclic GC from rescanning it during every timed section
    gc.collect()
    gc.freeze()
    enc = best(bare_encode, args.repeat)
    dec = best(bare_decode, args.repeat)

    root = args.dir or tempfile.mkdtemp(prefix="tape-bench-")
    shutil.rmtree(root, ignore_errors=True)
    log = Log.open(f"file:{root}", catalog)
    group = args.step_group

    # the events to append exist before timing starts, as the baseline's records do
    drafts = [(Draft("TradeTick", p, T0 + i * 1000, INSTRUMENT, "bench"),) for i, p in enumerate(payloads)]

    def append(fsync: str = "never") -> None:
        shutil.rmtree(root, ignore_errors=True)
        w = log.writer("bench", fsync=fsync)
        for i in range(0, n, group):
            w.append_steps(drafts[i:i + group])
        w.close()

    def replay() -> None:
        count = 0
        for e in log.replay("bench"):
            e.data
            count += 1
        assert count == n, count

    app_sync = best(lambda: append("interval"), args.repeat)
    app = best(append, args.repeat)
    rep = best(replay, args.repeat)
    size = sum(p.bytes for p in log.partitions("bench"))
    print(f"events                       {n:>12,}")
    print(f"bare fastavro encode         {n / enc:>12,.0f} ev/s")
    print(f"bare fastavro decode         {n / dec:>12,.0f} ev/s")
    print(f"file log append (group {group:>4}) {n / app:>12,.0f} ev/s   ratio to bare encode {app / enc:.2f}x time"
          "   (fsync=never: the log's CPU cost)")
    print(f"  with fsync=interval (1 s)   {n / app_sync:>12,.0f} ev/s   ratio to bare encode {app_sync / enc:.2f}x time"
          "   (the default: durable within a second)")
    print(f"file log replay (read+decode){n / rep:>12,.0f} ev/s   ratio to bare decode {rep / dec:.2f}x time")
    print(f"bytes on disk (market topic) {size:>12,}  ({size / n:.0f} B/event)")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
