"""Backtests over several instruments of one namespace: read in event time whatever the order they were imported
in, each instrument traded on its own, reproducible byte for byte and by `runs show` and `--verify`."""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from eventstore.store import Log

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "btcusdt-1m.csv"
BTC, ETH = "BTCUSDT.BINANCE", "ETHUSDT.BINANCE"
BT = ("backtest", "--source", "src", "--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20",
      "--param", "quantity=0.5", "--json")


def tape(store: Path, *args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    return p


def ingest_pair(store: Path, rows: int = 2000) -> None:
    """BTC's history first, then ETH's over the same minutes (ETH: BTC's bars over 20, another path)."""
    store.parent.mkdir(parents=True, exist_ok=True)
    lines = EXAMPLE.read_text().splitlines()[: rows + 1]
    (store.parent / "btc.csv").write_text("\n".join(lines) + "\n")
    eth = [lines[0]]
    for n, line in enumerate(lines[1:]):
        t, *px, vol = line.split(",")
        scale = Decimal(20) + Decimal(n % 7) / 10  # not a multiple of BTC: its own crossings
        eth.append(",".join([t, *(str((Decimal(x) / scale).quantize(Decimal("0.01"))) for x in px), vol]))
    (store.parent / "eth.csv").write_text("\n".join(eth) + "\n")
    for name, iid, base in (("btc", BTC, "BTC"), ("eth", ETH, "ETH")):
        tape(store, "ingest", "csv", str(store.parent / f"{name}.csv"), "--namespace", "src", "--instrument", iid,
             "--kind", "bars", "--timeframe", "1m", "--base", base, "--quote", "USDT")


def test_a_second_instrument_imported_later_is_read_in_time_order_and_traded_on_its_own(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ingest_pair(store)
    out = json.loads(tape(store, *BT).stdout)
    run = out["run_id"]
    log = Log.open(f"file:{store}")
    events = list(log.replay(run))
    fills = [e for e in events if e.name == "OrderFilled"]
    assert {e.data["instrument_id"] for e in fills} == {BTC, ETH}
    source_ts = {e.seq: e.ts_event for e in log.replay("src")}
    inputs = [int(c.rpartition(":")[2]) for e in events if (c := e.envelope["causation_id"] or "").startswith("src:")]
    times = [source_ts[seq] for seq in inputs]
    assert times == sorted(times) and inputs != sorted(inputs)  # event time, not import order
    for iid in (BTC, ETH):  # each instrument sized to its own target, not one target for both
        assert Decimal(out["positions"][iid]["quantity"]) in (Decimal(0), Decimal("0.5"))
    shown = json.loads(tape(store, "runs", "show", run, "--json").stdout)
    assert shown["statistics"] == out["statistics"] and shown["positions"] == out["positions"]
    verified = tape(store, "replay", run, "--verify")
    assert "identical" in verified.stdout.lower() or "diverge" not in verified.stdout.lower(), verified.stdout
    log.close()


def test_the_same_two_imports_give_byte_identical_run_logs(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "store", tmp_path / "b" / "store"
    ingest_pair(a)
    ingest_pair(b)
    ra, rb = json.loads(tape(a, *BT).stdout)["run_id"], json.loads(tape(b, *BT).stdout)["run_id"]
    assert ra == rb
    files = [sorted(p.relative_to(s / ra).as_posix() for p in (s / ra).rglob("*") if p.is_file()) for s in (a, b)]
    assert files[0] == files[1]
    for rel in files[0]:
        if rel != ".lock":
            assert (a / ra / rel).read_bytes() == (b / rb / rel).read_bytes(), rel


def test_each_instrument_has_its_own_figures_that_add_up_to_the_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ingest_pair(store, rows=1500)
    out = json.loads(tape(store, *BT).stdout)
    per, stats = out["instruments"], out["statistics"]
    assert set(per) == {BTC, ETH} and all(s["round_trips"] > 0 for s in per.values())
    assert sum(s["round_trips"] for s in per.values()) == stats["round_trips"]
    assert sum(s["fills"] for s in per.values()) == stats["fills"]
    assert sum(Decimal(s["trips_pnl"]) for s in per.values()) == Decimal(stats["trips_pnl"])
    assert sum(Decimal(s["fees"]) for s in per.values()) == Decimal(stats["fees_paid"])
    human = tape(store, *BT[:-1]).stdout  # the stored run again, as a trader reads it
    rows = [line for line in human.splitlines() if line.lstrip().startswith((BTC, ETH))]
    assert len(rows) == 2 and all("USDT" in r for r in rows)
    shown = json.loads(tape(store, "runs", "show", out["run_id"], "--json").stdout)
    assert shown["instruments"] == per
