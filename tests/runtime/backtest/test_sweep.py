"""`tape sweep`: a grid of ordinary runs in parallel — each point the very run `tape backtest` makes with its
parameters (the same run id, the same figures), points run before read back, ranked by the metric; bad input is
one line, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore.store import Log
from runtime.backtest.sweep import Grid, parse_axis
from schemas.errors import TapeError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "btcusdt-1m.csv"


def tape(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "--store", f"file:{store}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def ingested(tmp_path: Path, rows: int) -> Path:
    """A store whose namespace src holds the example's first `rows` bars."""
    store = tmp_path / "store"
    csv = tmp_path / "btc.csv"
    csv.write_text("\n".join(EXAMPLE.read_text().splitlines()[:rows + 1]) + "\n")
    assert tape(store, "ingest", "csv", str(csv), "--namespace", "src", "--instrument", "BTCUSDT.BINANCE", "--kind",
                "bars", "--timeframe", "1m", "--base", "BTC", "--quote", "USDT").returncode == 0
    return store


def test_axes_and_grids() -> None:
    assert parse_axis("fast=5..20:5") == ("fast", ["5", "10", "15", "20"])
    assert parse_axis("q=0.1..0.3:0.1") == ("q", ["0.1", "0.2", "0.3"])
    assert parse_axis("slow=20, 30,50") == ("slow", ["20", "30", "50"])
    grid = Grid.parse(["fast=1..3", "slow=10,20"])
    pts = grid.points()
    assert grid.size() == 6 and pts[0] == {"fast": "1", "slow": "10"} and pts[-1] == {"fast": "3", "slow": "20"}
    drawn = grid.points(sample=3, seed=7)
    assert drawn == grid.points(sample=3, seed=7) and len(drawn) == 3 and all(p in pts for p in drawn)
    for bad in ("fast", "fast=", "fast=9..1", "fast=1..5:0", "fast=a..b", "fast=1,,2"):
        with pytest.raises(TapeError):
            parse_axis(bad)
    with pytest.raises(TapeError, match="given twice"):
        Grid.parse(["fast=1", "fast=2"])


def test_a_sweep_runs_each_point_as_the_backtest_of_its_parameters_and_reuses_them(tmp_path: Path) -> None:
    store = ingested(tmp_path, 2000)
    args = ("sweep", "--source", "src", "--strategy", "sma_cross", "--param", "fast=3..7:2", "--param",
            "slow=20,30", "--param", "quantity=0.5", "--workers", "2", "--metric", "sharpe", "--json")
    p = tape(store, *args)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    points = out["points"]
    assert len(points) == 6 and {r["status"] for r in points} == {"ran"}
    sharpes = [r["statistics"]["sharpe"] for r in points]
    assert sharpes == sorted(sharpes, reverse=True)  # ranked, best first
    assert {(r["params"]["fast"], r["params"]["slow"]) for r in points} == {
        (f, s) for f in ("3", "5", "7") for s in ("20", "30")}
    log = Log.open(f"file:{store}")
    assert {r["run_id"] for r in points} <= set(log.namespaces())
    one = points[2]  # the same parameters through `tape backtest`: the same run (its id), the same figures
    b = tape(store, "backtest", "--source", "src", "--strategy", "sma_cross", "--param",
             f"fast={one['params']['fast']}", "--param", f"slow={one['params']['slow']}", "--param", "quantity=0.5",
             "--json")
    assert b.returncode == 0, b.stderr
    shown = json.loads(b.stdout)
    assert shown["run_id"] == one["run_id"] and shown["statistics"] == one["statistics"] and "ran before" in b.stderr
    again = json.loads(tape(store, *args).stdout)["points"]  # everything read back, nothing run
    assert {r["status"] for r in again} == {"reused"}
    assert [(r["run_id"], r["statistics"]) for r in again] == [(r["run_id"], r["statistics"]) for r in points]
    human = tape(store, *args[:-1])
    assert human.returncode == 0 and "6 points: 0 run, 6 read back" in human.stdout


def test_bad_sweeps_are_one_line_exit_2(tmp_path: Path) -> None:
    store = ingested(tmp_path, 99)
    base = ("sweep", "--source", "src", "--strategy", "sma_cross")
    for extra, want in ((("--param", "fats=1,2"), "unknown parameter 'fats'"),
                        (("--param", "fast=a,b"), "not a valid int"),
                        (("--param", "fast=30,40", "--param", "slow=20"), "sweep point fast=30 slow=20"),
                        (("--param", "fast=1..5:0"), "STEP > 0"),
                        (("--param", "fast=2", "--metric", "luck"), "--metric")):
        p = tape(store, *base, *extra)
        assert p.returncode == 2 and want in p.stderr and "Traceback" not in p.stderr, (extra, p.stderr)
    assert Log.open(f"file:{store}").namespaces() == ["src"]  # nothing ran
