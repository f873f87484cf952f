"""`tape live` against the sandbox venue on loopback: tick-to-order latency, market events recorded per second, and
startup time as the live log grows.

Usage: python bench/live_session.py [--seconds 20] [--speed 120] [--sizes 1e4,1e5,1e6] [--skip latency,rate,startup]

Every session is the real CLI in its own process, the real ccxt (and ccxt.pro) over HTTP and websockets, the
sandbox replaying a seeded random walk of one-minute bars. A small launcher around the CLI stamps, in the session's
own process (perf_counter_ns):
  * when each bar was received: its closing kline frame off the websocket (stream), or the REST poll's answer;
  * when the first order request after that bar leaves: the ccxt call that puts it on the wire (live), or the
    simulated venue's submit (paper);
so tick-to-order = received → on the wire, per bar that led to an order (market_maker re-quotes on every bar).

Market events recorded per second: a paper session (sma_cross) while the sandbox replays far faster than real time,
against the rate of `tape backtest` over the same bars in the same run (the baseline: the same engine with
nothing live around it). Startup: a paper namespace grown to each size (events), then sessions that only start —
recovery + reconciliation + RunStopped — timed whole, minus an empty namespace's start measured in the same run.
Times are wall clock on a shared 2-core machine: expect tens of percent of noise; compare ratios within a run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY, SECRET = "bench-key", "bench-secret"
T0_NS = 1_704_067_200_000_000_000  # 2024-01-01
MINUTE_NS = 60_000_000_000

LAUNCHER = r'''
import atexit, json, os, sys, time
from runtime.cli.app import main
from handlers.venues.ccxt import adapter, feed
from handlers.venues.sim import venue as sim
from runtime.live import node

received = {}  # (instrument, open_ts) -> perf_counter_ns when the bar arrived
last = [None]  # the received time of the bar being processed
marks = {"commit": None, "request": None, "order": None}  # the first of each after that bar
samples = {"commit": [], "request": [], "order": []}

take, poll = feed.BarFeed.take, feed.BarFeed.poll
def stamped_take(self, bars):
    bars = list(bars)
    ids = {s: i for i, s in self.symbols.items()}
    for b in bars:
        received.setdefault((ids.get(b.symbol), b.open_ms * 1_000_000), b.received_ns)
    return take(self, bars)
def stamped_poll(self, instruments=None):
    out = poll(self, instruments)
    now = time.perf_counter_ns()
    for _, p, _ in out:
        received.setdefault((p["instrument_id"], p["open_ts"]), now)
    return out
feed.BarFeed.take, feed.BarFeed.poll = stamped_take, stamped_poll

inp = node.LiveNode._input
def on_input(self, name, payload, ts, source, *rest):
    if name == "Bar":
        last[0] = received.pop((payload["instrument_id"], payload["open_ts"]), None)
        for k in marks:
            marks[k] = None
    return inp(self, name, payload, ts, source, *rest)
node.LiveNode._input = on_input

def mark(*kinds):
    if last[0] is None:
        return
    now = time.perf_counter_ns()
    for k in kinds:
        if marks[k] is None:
            marks[k] = now
            samples[k].append(now - last[0])

def wrap(cls, method, *kinds):
    original = getattr(cls, method)
    def wrapped(self, *args, **kwargs):
        mark(*kinds)
        return original(self, *args, **kwargs)
    setattr(cls, method, wrapped)
wrap(adapter.CcxtVenue, "after_commit", "commit")  # the step that holds the bar's orders is committed
wrap(adapter.CcxtVenue, "_send_cancel", "request")
wrap(adapter.CcxtVenue, "_send_order", "request", "order")
wrap(sim.SimulatedVenue, "after_commit", "commit")
wrap(sim.SimulatedVenue, "submit", "request", "order")
wrap(sim.SimulatedVenue, "cancel", "request")

# BENCH_STOP: "idle" ends the session when a pass after the catch-up brings no bar; a number, at that many events
stop_at = os.environ.get("BENCH_STOP", "")
run, bars = node.LiveNode.run, node.LiveNode._bars
def counted_bars(self):
    out = bars(self)
    self.bench_seen = getattr(self, "bench_seen", 0) + len(out)
    self.bench_idle = self.bench_seen > 0 and not out
    return out
def done(self):
    if stop_at == "idle":
        return getattr(self, "bench_idle", False)
    return bool(stop_at) and self.writer.next_seq > int(stop_at)
def bounded(self, stop, **kwargs):
    return run(self, lambda: stop() or done(self), **kwargs)
node.LiveNode._bars, node.LiveNode.run = counted_bars, bounded

if os.environ.get("BENCH_FULL_REPLAY"):  # recovery without snapshots: the log replayed from seq 1 (the baseline)
    node.LiveNode._snapshot = lambda self: None

atexit.register(lambda: open(os.environ["BENCH_OUT"], "w").write(json.dumps(samples)))
sys.argv[0] = "tape"
main()
'''


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TAPE_BINANCE_API_KEY": KEY, "TAPE_BINANCE_SECRET": SECRET}


def write_source(store: Path, bars: int, seed: int = 7) -> None:
    """An instrument and `bars` one-minute bars: a seeded random walk in 0.01 ticks."""
    from eventstore.store import Log
    from eventstore.writer import Draft

    rng = random.Random(seed)
    log = Log.open(f"file:{store}")
    try:
        with log.writer("hist", fsync="never") as w:
            w.append([Draft("InstrumentDefined", {
                "instrument_id": "BTCUSDT.BINANCE", "venue": "BINANCE", "symbol": "BTCUSDT", "kind": "SPOT",
                "base_currency": "BTC", "quote_currency": "USDT", "settlement_currency": "USDT",
                "price_increment": Decimal("0.01"), "size_increment": Decimal("0.00001"), "price_precision": 2,
                "size_precision": 5, "min_quantity": Decimal("0.00001"), "max_quantity": Decimal(9000),
                "min_notional": Decimal(10), "maker_fee": Decimal("0.001"), "taker_fee": Decimal("0.001"),
                "multiplier": Decimal(1)}, T0_NS, "BTCUSDT.BINANCE", "bench")])
            px = 4_200_000
            drafts = []
            for i in range(bars):
                o = px
                px = max(100_000, px + rng.randint(-1500, 1500))
                hi, lo = max(o, px) + rng.randint(0, 800), min(o, px) - rng.randint(0, 800)
                ts = T0_NS + i * MINUTE_NS
                drafts.append(Draft("Bar", {
                    "instrument_id": "BTCUSDT.BINANCE", "timeframe": "1m", "open_ts": ts,
                    "open": Decimal(o).scaleb(-2), "high": Decimal(hi).scaleb(-2), "low": Decimal(lo).scaleb(-2),
                    "close": Decimal(px).scaleb(-2), "volume": Decimal(5), "trades": 10},
                    ts + MINUTE_NS, "BTCUSDT.BINANCE", "bench"))
                if len(drafts) == 10_000:
                    w.append(drafts)
                    drafts = []
            if drafts:
                w.append(drafts)
    finally:
        log.close()


class Sandbox:
    """`tape sandbox serve` on a free port, replaying the source at `speed`."""

    def __init__(self, store: Path, speed: str, *, loop: bool = True):
        self.argv = [sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", "sandbox", "serve", "--source",
                     "hist", "--port", "0", "--speed", speed, *(("--loop",) if loop else ()), "--api-key", KEY,
                     "--secret", SECRET, "--balance", "USDT=1000000", "--balance", "BTC=20"]

    def __enter__(self) -> Sandbox:  # noqa: PYI034
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=env(), cwd=ROOT)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("sandbox venue on "):
            raise SystemExit(f"the sandbox did not start: {line!r}")
        self.url = line.split()[3]
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def live(store: Path, url: str, namespace: str, strategy: str, seconds: float, *extra: str,
         out: Path | None = None, stop: str = "", full_replay: bool = False) -> tuple[float, str]:
    """One `tape live` session (through the launcher); its wall time and its last line."""
    params = {"market_maker": ["--param", "spread=0.0005", "--param", "quantity=0.001", "--param",
                               "max_inventory=0.01"],
              "sma_cross": ["--param", "fast=5", "--param", "slow=20", "--param", "quantity=0.001"]}[strategy]
    argv = [sys.executable, "-c", LAUNCHER, "--store", f"file:{store}", "live", "--venue", "binance", "--namespace",
            namespace, "--strategy", strategy, *params, "--symbol", "BTC/USDT", "--sandbox-url", url, "--poll",
            "0.05", "--max-seconds", str(seconds), *extra]
    t = time.perf_counter()
    knobs = {"BENCH_OUT": str(out or os.devnull), "BENCH_STOP": stop, "BENCH_FULL_REPLAY": "1" if full_replay else ""}
    p = subprocess.run(argv, env={**env(), **knobs}, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 3600,
                       check=False)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"tape live failed: {p.stderr.strip().splitlines()[-1:]}")
    return took, p.stdout.strip().splitlines()[-1]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def latency(root: Path, seconds: float, speed: str) -> None:
    print(f"\ntick-to-order, ms from a bar received (its kline frame off the websocket, or the REST answer) to: the "
          f"step holding its orders committed, the first request on the wire (a cancel or an order), the first new "
          f"order (market_maker: cancel both quotes, quote again, every bar; sandbox at {speed}x, a bar every "
          f"{60 / float(speed):.2f} s; {seconds:.0f} s a session; live = ccxt over HTTP with its rate limiter on, "
          "paper = the simulated venue in the process)")
    print(f"{'session':<18} {'bars':>5} {'commit p50':>11} {'p99':>7} {'request p50':>12} {'p99':>7} "
          f"{'order p50':>10} {'p99':>7}")
    store = root / "latency"
    write_source(store, 5000)
    with Sandbox(store, speed) as sb:
        for n, (label, extra) in enumerate([("live, stream", ()), ("live, REST poll", ("--no-stream",)),
                                            ("paper, stream", ("--paper",)),
                                            ("paper, REST poll", ("--paper", "--no-stream"))]):
            out = root / f"samples-{n}.json"
            live(store, sb.url, f"live-lat{n}", "market_maker", seconds, "--history", "30", *extra, out=out)
            got = {k: [x / 1e6 for x in v] for k, v in json.loads(out.read_text()).items()}
            cells = []
            for k in ("commit", "request", "order"):
                ms = got[k]
                cells += [f"{statistics.median(ms):.2f}" if ms else "-", f"{percentile(ms, 0.99):.2f}" if ms else "-"]
            print(f"{label:<18} {len(got['commit']):>5} {cells[0]:>11} {cells[1]:>7} {cells[2]:>12} {cells[3]:>7} "
                  f"{cells[4]:>10} {cells[5]:>7}", flush=True)


def settled(url: str) -> None:
    """Wait until the sandbox has released its whole source (market time stops moving)."""
    import urllib.request

    last = None
    while True:
        with urllib.request.urlopen(url + "/sandbox/clock", timeout=5) as r:
            now = json.loads(r.read())["marketTimeNs"]
        if now == last:
            return
        last = now
        time.sleep(0.5)


def rate(root: Path, bars: int) -> None:
    print(f"\nmarket events recorded per second (paper sma_cross catching up over REST, 1,000 bars a request, on "
          f"{bars:,} bars the sandbox has already released; each bar one committed step; measured between the first "
          "and the last bar's ts_init, the runtime's clock) against `tape backtest` over the same bars in the same run")
    from eventstore.store import Log
    from runtime.backtest.runner import BacktestSpec, run_backtest

    store = root / "rate"
    write_source(store, bars)
    with Sandbox(store, "max", loop=False) as sb:
        settled(sb.url)
        for n in range(3):
            live(store, sb.url, f"live-rate{n}", "sma_cross", 3600, "--paper", "--no-stream", "--history",
                 str(bars), stop="idle")
    log = Log.open(f"file:{store}")
    try:
        for n in range(3):
            events = list(log.replay(f"live-rate{n}"))
            stamps = [e.envelope["ts_init"] for e in events if e.name == "Bar"]
            span = (stamps[-1] - stamps[0]) / 1e9
            between = sum(1 for e in events if stamps[0] <= e.envelope["ts_init"] <= stamps[-1])
            t = time.perf_counter()
            bt = run_backtest(log, BacktestSpec(source="hist", strategy="sma_cross",
                                                params={"fast": "5", "slow": "20", "quantity": "0.001"}),
                              run_id=f"bt-rate{n}")
            took = time.perf_counter() - t
            live_rate, bt_rate = (len(stamps) - 1) / span, bars / took
            print(f"  live paper session: {len(stamps):,} bars in {span:.2f} s = {live_rate:,.0f} bars/s, "
                  f"{between / span:,.0f} events/s recorded; run_backtest on the same bars: {bt_rate:,.0f} bars/s "
                  f"({bt.events_out:,} events); live/backtest = {live_rate / bt_rate:.2f}", flush=True)
    finally:
        log.close()


def counted(store: Path, namespace: str) -> tuple[int, int]:
    """Bars and events of a namespace."""
    from eventstore.store import Log

    log = Log.open(f"file:{store}")
    try:
        if namespace not in log.namespaces():
            return 0, 0
        names = [e.name for e in log.replay(namespace)]
    finally:
        log.close()
    return names.count("Bar"), len(names)


def grow(store: Path, url: str, size: int) -> int:
    """Run a paper session on live-grow until it holds at least `size` events; the count."""
    if counted(store, "live-grow")[1] < size:
        live(store, url, "live-grow", "market_maker", 3600, "--paper", "--no-stream", stop=str(size))
    return counted(store, "live-grow")[1]


def startup(root: Path, sizes: list[int]) -> None:
    print("\nstartup (a session that only starts: recovery + reconciliation + RunStopped), paper namespace grown by "
          "market_maker (a snapshot every 10,000 events); from the latest snapshot, and (baseline) the whole log "
          "replayed")
    print(f"{'events':>10} {'start s':>8} {'of which recovery s':>20} {'replayed':>9} {'full replay s':>14} "
          f"{'recovery s':>11} {'ratio':>6}")
    store = root / "startup"
    write_source(store, 20_000)
    with Sandbox(store, "60000") as sb:  # 1,000 bars a second, looping: the log grows as fast as a session records
        base = min(live(store, sb.url, f"live-empty{i}", "market_maker", 0, "--paper", "--no-stream")[0]
                   for i in range(3))
        print(f"{0:>10,} {base:>8.2f} {'(baseline: process start, imports, markets)':>20}")
        for size in sizes:
            n = grow(store, sb.url, size)
            runs = [live(store, sb.url, "live-grow", "market_maker", 0, "--paper", "--no-stream") for _ in range(2)]
            took, line = min(runs)
            replayed = line.split(" recovered ")[1].split(" events")[0]
            full = live(store, sb.url, "live-grow", "market_maker", 0, "--paper", "--no-stream", full_replay=True)[0]
            print(f"{n:>10,} {took:>8.2f} {took - base:>20.2f} {replayed:>9} {full:>14.2f} {full - base:>11.2f} "
                  f"{(full - base) / max(took - base, 1e-3):>5.1f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="Length of each latency session.")
    ap.add_argument("--speed", default="120", help="Sandbox speed for the latency sessions (120: a bar every 0.5 s).")
    ap.add_argument("--rate-bars", type=int, default=5_000,
                    help="Bars for the recording rate (the sandbox keeps its last 5,000 candles).")
    ap.add_argument("--sizes", default="1e4,1e5,1e6", help="Live log sizes (events) for the startup times.")
    ap.add_argument("--skip", default="", help="Comma-separated parts to skip: latency, rate, startup.")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    root = Path(tempfile.mkdtemp(prefix="tape-live-bench-"))
    t = time.perf_counter()
    try:
        if "latency" not in skip:
            latency(root, args.seconds, args.speed)
        if "rate" not in skip:
            rate(root, args.rate_bars)
        if "startup" not in skip:
            startup(root, [int(float(s)) for s in args.sizes.split(",")])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
