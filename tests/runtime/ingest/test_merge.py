"""`tape backtest --source A --source B`: several namespaces merged by event time into one derived, content-addressed
source — the same run as over one namespace holding both histories, reused while the sources stand still, another
merge (and another run) when one grows, rebuilt when a build was cut short; an instrument in two sources refused."""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from eventstore.store import Log
from eventstore.writer import Draft
from runtime.ingest.merge import merged_from, merged_name

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "btcusdt-1m.csv"
BTC, ETH = "BTCUSDT.BINANCE", "ETHUSDT.BINANCE"
SMA = ("--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20", "--param", "quantity=0.5", "--json")


def tape(store: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == code, p.stderr
    return p


def histories(tmp: Path, first: int, rows: int) -> tuple[Path, Path]:
    """BTC's bars from row `first`, and ETH's over the same minutes (BTC's over about 20: crossings of its own)."""
    lines = EXAMPLE.read_text().splitlines()
    body = lines[1 + first:1 + first + rows]
    btc, eth = tmp / f"btc-{first}.csv", tmp / f"eth-{first}.csv"
    btc.write_text("\n".join([lines[0], *body]) + "\n")
    out = [lines[0]]
    for n, line in enumerate(body, first):
        t, *px, vol = line.split(",")
        scale = Decimal(20) + Decimal(n % 7) / 10
        out.append(",".join([t, *(str((Decimal(x) / scale).quantize(Decimal("0.01"))) for x in px), vol]))
    eth.write_text("\n".join(out) + "\n")
    return btc, eth


def ingest(store: Path, csv: Path, namespace: str, iid: str) -> None:
    tape(store, "ingest", "csv", str(csv), "--namespace", namespace, "--instrument", iid, "--kind", "bars",
         "--timeframe", "1m", "--base", iid[:3], "--quote", "USDT")


def test_two_sources_run_as_one_namespace_holding_both_and_the_merge_follows_its_sources(tmp_path: Path) -> None:
    store = tmp_path / "store"
    btc, eth = histories(tmp_path, 0, 1500)
    ingest(store, btc, "btc", BTC)
    ingest(store, eth, "eth", ETH)
    ingest(store, btc, "both", BTC)  # the same histories in one namespace, BTC's imported first
    ingest(store, eth, "both", ETH)
    one = json.loads(tape(store, "backtest", "--source", "both", *SMA).stdout)
    p = tape(store, "backtest", "--source", "btc", "--source", "eth", *SMA)
    two = json.loads(p.stdout)
    log = Log.open(f"file:{store}")
    merged = two["source"]
    assert merged.startswith("merged-") and f"merged into {merged}" in p.stderr
    assert [(s["namespace"], s["to_seq"], s["events"]) for s in merged_from(log, merged)] == [
        ("btc", log.horizon("btc"), 1501), ("eth", log.horizon("eth"), 1501)]  # each definition and its bars
    assert two["statistics"] == one["statistics"] and two["round_trips"] == one["round_trips"]
    assert set(two["instruments"]) == {BTC, ETH} and two["positions"] == one["positions"]
    again = tape(store, "backtest", "--source", "btc", "--source", "eth", *SMA)
    assert "read from their merge" in again.stderr and "ran before" in again.stderr
    assert json.loads(again.stdout)["run_id"] == two["run_id"]
    more, _ = histories(tmp_path, 1500, 200)
    ingest(store, more, "btc", BTC)  # a source grew: another merge, another run
    grown = tape(store, "backtest", "--source", "btc", "--source", "eth", *SMA)
    g = json.loads(grown.stdout)
    assert g["source"] != merged and g["run_id"] != two["run_id"] and "merged into" in grown.stderr
    assert merged in Log.open(f"file:{store}").namespaces()  # the run made before still reads its own merge
    assert json.loads(tape(store, "runs", "show", two["run_id"], "--json").stdout)["statistics"] == two["statistics"]


def test_a_merge_cut_short_is_built_again_and_an_instrument_in_two_sources_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    btc, eth = histories(tmp_path, 0, 300)
    ingest(store, btc, "btc", BTC)
    ingest(store, eth, "eth", ETH)
    log = Log.open(f"file:{store}")
    pinned = [{"namespace": ns, "to_seq": log.horizon(ns), "hash": log.chain_at(ns, log.horizon(ns))}
              for ns in ("btc", "eth")]
    name = merged_name(pinned)
    with log.writer(name) as w:  # what a build killed after its first step leaves
        w.append([Draft("SourcesMerged", {"sources": [{**s, "events": 0} for s in pinned], "complete": False},
                        1, "", "merge")])
    log.close()
    p = tape(store, "backtest", "--source", "btc", "--source", "eth", *SMA)
    assert json.loads(p.stdout)["source"] == name and f"merged into {name}" in p.stderr
    assert sum(1 for _ in Log.open(f"file:{store}").replay(name, types=["Bar"])) == 600
    ingest(store, btc, "btc2", BTC)
    bad = tape(store, "backtest", "--source", "btc", "--source", "btc2", *SMA, code=2)
    assert "instrument BTCUSDT.BINANCE is defined in both btc and btc2" in bad.stderr
    twice = tape(store, "backtest", "--source", "btc", "--source", "btc", *SMA, code=2)
    assert "named twice" in twice.stderr
    nonsense = tape(store, "backtest", "--source", "eth", "--source", "btc", "--strategy", "sma_cross", "--param",
                    "quantity=nan", code=2)  # refused before the merge (eth, btc: another one) is written
    assert "parameter quantity='nan'" in nonsense.stderr
    assert "nan" in tape(store, "sweep", "--source", "eth", "--source", "btc", "--strategy", "sma_cross", "--param",
                         "quantity=nan", code=2).stderr
    assert not [n for n in Log.open(f"file:{store}").namespaces() if n.startswith("merged-") and n != name]


def test_runs_show_names_the_sources_of_a_merge(tmp_path: Path) -> None:
    store = tmp_path / "store"
    btc, eth = histories(tmp_path, 0, 200)
    ingest(store, btc, "btc", BTC)
    ingest(store, eth, "eth", ETH)
    run = json.loads(tape(store, "backtest", "--source", "btc", "--source", "eth", *SMA).stdout)["run_id"]
    shown = tape(store, "runs", "show", run).stdout
    assert "merged from btc (up to seq 202), eth (up to seq 202)" in shown
    as_json = json.loads(tape(store, "runs", "show", run, "--json").stdout)
    assert [s["namespace"] for s in as_json["merged_from"]] == ["btc", "eth"]
